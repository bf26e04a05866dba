// model.c: building the graph (shape inference, validation), laying out the parameter
// buffer, naming tensors, counting MACs and parameters, initialising weights.
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

static const char *const OP_NAMES[OP_COUNT] = {
    [OP_INPUT] = "input",
    [OP_CONV2D] = "conv2d",
    [OP_BATCHNORM2D] = "batchnorm2d",
    [OP_RELU] = "relu",
    [OP_MAXPOOL2D] = "maxpool2d",
    [OP_AVGPOOL2D] = "avgpool2d",
    [OP_GLOBAL_AVGPOOL] = "global_avgpool",
    [OP_LINEAR] = "linear",
    [OP_FLATTEN] = "flatten",
    [OP_ADD] = "add",
    [OP_DROPOUT] = "dropout",
};

const char *op_kind_name(OpKind op) { return (op >= 0 && op < OP_COUNT) ? OP_NAMES[op] : "?"; }

OpKind op_kind_parse(const char *name) {
    for (int i = 0; i < OP_COUNT; i++)
        if (strcmp(OP_NAMES[i], name) == 0) return (OpKind)i;
    return OP_COUNT;
}

void model_init(Model *m, Shape input, int n_classes) {
    memset(m, 0, sizeof *m);
    snprintf(m->arch, sizeof m->arch, "custom");
    m->input = input;
    m->n_classes = n_classes;
    for (int c = 0; c < HP_MAX_CHANNELS_IN; c++) {
        m->norm_mean[c] = 0.0f;
        m->norm_std[c] = 1.0f;
    }
}

void model_free(Model *m) {
    free(m->nodes);
    free(m->params);
    free(m->buffers);
    free(m->provenance);
    memset(m, 0, sizeof *m);
}

// Output size of a sliding window along one axis (floor mode) that fits (in + 2 pad >= k); in 64
// bits, so a huge input or padding cannot overflow.
static long long window_out(int in, int k, int stride, int pad) {
    return ((long long)in + 2LL * pad - k) / stride + 1;
}

// Checks a conv/pool window against the input; fills *out. Returns 0 or -1 with err set.
static int check_window(const Node *n, Shape in, bool is_pool, Shape *out, HpErr *err) {
    if (n->kernel < 1 || n->stride < 1 || n->padding < 0)
        return hp_fail(err, "node '%s': kernel %d, stride %d, padding %d: kernel and stride must be >= 1, padding >= 0",
                       n->name, n->kernel, n->stride, n->padding);
    if (!is_pool && n->padding >= n->kernel)
        return hp_fail(err, "node '%s': padding %d is not smaller than the kernel %d", n->name, n->padding, n->kernel);
    if (is_pool && 2LL * n->padding > n->kernel)
        return hp_fail(err, "node '%s': padding %d is more than half the kernel %d", n->name, n->padding, n->kernel);
    if ((long long)in.h + 2LL * n->padding < n->kernel || (long long)in.w + 2LL * n->padding < n->kernel)
        return hp_fail(err, "node '%s': kernel %d does not fit the %dx%d input with padding %d", n->name, n->kernel,
                       in.h, in.w, n->padding);
    long long h = window_out(in.h, n->kernel, n->stride, n->padding);
    long long w = window_out(in.w, n->kernel, n->stride, n->padding);
    if (h > INT_MAX || w > INT_MAX)
        return hp_fail(err, "node '%s': output %lldx%lld is too large (at most %d a side)", n->name, h, w, INT_MAX);
    out->h = (int)h;
    out->w = (int)w;
    return 0;
}

// Infers n->out from the shapes of its inputs, validating attributes. Returns 0 or -1.
static int infer_shape(const Model *m, Node *n, HpErr *err) {
    Shape in = n->n_in > 0 ? m->nodes[n->in[0]].out : m->input;
    Shape out = in;
    switch (n->op) {
    case OP_INPUT:
        out = m->input;
        break;
    case OP_CONV2D:
        if (n->out_features < 1 || n->groups < 1 || in.c % n->groups != 0 || n->out_features % n->groups != 0)
            return hp_fail(err, "node '%s': %d input and %d output channels do not split into %d groups", n->name, in.c,
                           n->out_features, n->groups);
        if (check_window(n, in, false, &out, err)) return -1;
        out.c = n->out_features;
        break;
    case OP_BATCHNORM2D:
        if (!(n->eps > 0.0f) || !(n->momentum >= 0.0f && n->momentum <= 1.0f))
            return hp_fail(err, "node '%s': eps %g must be > 0 and momentum %g in [0, 1]", n->name, n->eps, n->momentum);
        break;
    case OP_MAXPOOL2D:
    case OP_AVGPOOL2D:
        if (check_window(n, in, true, &out, err)) return -1;
        break;
    case OP_GLOBAL_AVGPOOL:
        out.h = out.w = 1;
        break;
    case OP_FLATTEN:
        if (shape_numel(in) > INT_MAX)
            return hp_fail(err, "node '%s': %dx%dx%d is %zu features, more than %d", n->name, in.c, in.h, in.w,
                           shape_numel(in), INT_MAX);
        out = (Shape){(int)shape_numel(in), 1, 1};
        break;
    case OP_LINEAR:
        if (in.h != 1 || in.w != 1)
            return hp_fail(err, "node '%s': linear needs a flat input, got %dx%dx%d (add a flatten)", n->name, in.c,
                           in.h, in.w);
        if (n->out_features < 1) return hp_fail(err, "node '%s': out_features %d must be >= 1", n->name, n->out_features);
        out = (Shape){n->out_features, 1, 1};
        break;
    case OP_ADD: {
        Shape b = m->nodes[n->in[1]].out;
        if (b.c != in.c || b.h != in.h || b.w != in.w)
            return hp_fail(err, "node '%s': adds %dx%dx%d to %dx%dx%d", n->name, in.c, in.h, in.w, b.c, b.h, b.w);
        break;
    }
    case OP_DROPOUT:
        if (!(n->p >= 0.0f && n->p < 1.0f)) return hp_fail(err, "node '%s': dropout p %g not in [0, 1)", n->name, n->p);
        break;
    case OP_RELU:
        break;
    default:
        return hp_fail(err, "node '%s': unknown op %d", n->name, (int)n->op);
    }
    n->out = out;
    return 0;
}

// Number of inputs an op takes.
static int op_arity(OpKind op) { return op == OP_INPUT ? 0 : op == OP_ADD ? 2 : 1; }

int model_add(Model *m, const Node *spec, HpErr *err) {
    Node n = *spec;
    if (n.name[0] == '\0') return hp_fail(err, "node %d: empty name", m->n_nodes);
    if ((n.op == OP_INPUT) != (m->n_nodes == 0))
        return hp_fail(err, "node '%s': the input node must be the first node and only that", n.name);
    if (n.op < 0 || n.op >= OP_COUNT) return hp_fail(err, "node '%s': unknown op %d", n.name, (int)n.op);
    n.n_in = op_arity(n.op);
    for (int i = 0; i < n.n_in; i++)
        if (n.in[i] < 0 || n.in[i] >= m->n_nodes)
            return hp_fail(err, "node '%s': input %d is not an earlier node", n.name, n.in[i]);
    for (int i = n.n_in; i < 2; i++) n.in[i] = -1;
    for (int i = 0; i < m->n_nodes; i++)
        if (strcmp(m->nodes[i].name, n.name) == 0) return hp_fail(err, "node '%s': duplicate name", n.name);
    if (infer_shape(m, &n, err)) return -1;
    if (m->n_nodes == m->cap_nodes) {
        int cap = m->cap_nodes ? 2 * m->cap_nodes : 32;
        Node *grown = hp_alloc((size_t)cap, sizeof *grown, err);
        if (!grown) return hp_prefix(err, "the graph");
        if (m->n_nodes) memcpy(grown, m->nodes, (size_t)m->n_nodes * sizeof *grown);
        free(m->nodes);
        m->nodes = grown;
        m->cap_nodes = cap;
    }
    n.w_off = n.w_len = n.b_off = n.b_len = n.mean_off = n.var_off = 0;
    m->nodes[m->n_nodes] = n;
    return m->n_nodes++;
}

// Lengths of node n's weight and bias given its input shape.
static void param_lengths(const Model *m, const Node *n, size_t *w_len, size_t *b_len) {
    Shape in = n->n_in > 0 ? m->nodes[n->in[0]].out : m->input;
    *w_len = *b_len = 0;
    if (n->op == OP_CONV2D) {
        *w_len = (size_t)n->out_features * (size_t)(in.c / n->groups) * (size_t)n->kernel * (size_t)n->kernel;
        *b_len = n->bias ? (size_t)n->out_features : 0;
    } else if (n->op == OP_LINEAR) {
        *w_len = (size_t)n->out_features * (size_t)in.c;
        *b_len = n->bias ? (size_t)n->out_features : 0;
    } else if (n->op == OP_BATCHNORM2D) {
        *w_len = *b_len = (size_t)in.c;
    }
}

int model_layout(Model *m, HpErr *err) {
    if (m->n_nodes < 2) return hp_fail(err, "graph has no layers");
    Shape last = m->nodes[m->n_nodes - 1].out;
    if (last.c != m->n_classes || last.h != 1 || last.w != 1)
        return hp_fail(err, "last node '%s' gives %dx%dx%d, expected %d class scores", m->nodes[m->n_nodes - 1].name,
                       last.c, last.h, last.w, m->n_classes);
    size_t p = 0, b = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        Node *n = &m->nodes[i];
        param_lengths(m, n, &n->w_len, &n->b_len);
        n->w_off = p;
        p += n->w_len;
        n->b_off = p;
        p += n->b_len;
        if (n->op == OP_BATCHNORM2D) {
            n->mean_off = b;
            n->var_off = b + (size_t)n->out.c;
            b += 2 * (size_t)n->out.c;
        }
    }
    free(m->params);
    free(m->buffers);
    m->params = m->buffers = NULL;
    m->n_params = p;
    m->n_buffers = b;
    return 0;
}

int model_alloc(Model *m, HpErr *err) {
    free(m->params);
    free(m->buffers);
    m->params = hp_zalloc(m->n_params, sizeof(float), err);
    m->buffers = m->params ? hp_zalloc(m->n_buffers, sizeof(float), err) : NULL;
    if (!m->buffers) {
        free(m->params);
        m->params = NULL;
        return hp_prefix(err, "the parameters");
    }
    for (int i = 0; i < m->n_nodes; i++) {
        const Node *n = &m->nodes[i];
        if (n->op != OP_BATCHNORM2D) continue;
        for (int c = 0; c < n->out.c; c++) {
            m->params[n->w_off + c] = 1.0f;
            m->buffers[n->var_off + c] = 1.0f;
        }
    }
    return 0;
}

size_t model_bytes(const Model *m) { return (m->n_params + m->n_buffers) * sizeof(float); }

int model_finalize(Model *m, HpErr *err) { return model_layout(m, err) < 0 ? -1 : model_alloc(m, err); }

void model_init_params(Model *m, Rng *rng) {
    for (int i = 0; i < m->n_nodes; i++) {
        const Node *n = &m->nodes[i];
        float *w = m->params + n->w_off, *b = m->params + n->b_off;
        if (n->op == OP_CONV2D) {
            // Kaiming normal, fan_out mode, ReLU gain: std = sqrt(2 / (O * k * k))
            float std = sqrtf(2.0f / (float)(n->out_features * n->kernel * n->kernel));
            for (size_t j = 0; j < n->w_len; j++) w[j] = std * rng_normal(rng);
            for (size_t j = 0; j < n->b_len; j++) b[j] = 0.0f;
        } else if (n->op == OP_LINEAR) {
            // PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
            float bound = 1.0f / sqrtf((float)(n->w_len / (size_t)n->out_features));
            for (size_t j = 0; j < n->w_len; j++) w[j] = bound * (2.0f * rng_uniform(rng) - 1.0f);
            for (size_t j = 0; j < n->b_len; j++) b[j] = bound * (2.0f * rng_uniform(rng) - 1.0f);
        } else if (n->op == OP_BATCHNORM2D) {
            for (int c = 0; c < n->out.c; c++) {
                w[c] = 1.0f;
                b[c] = 0.0f;
                m->buffers[n->mean_off + c] = 0.0f;
                m->buffers[n->var_off + c] = 1.0f;
            }
        }
    }
}

// Returns a malloc'd copy of n floats, or NULL with err set.
static float *dup_floats(const float *src, size_t n, HpErr *err) {
    float *dst = hp_alloc(n, sizeof(float), err);
    if (dst && n) memcpy(dst, src, n * sizeof(float));
    return dst;
}

int model_copy(Model *dst, const Model *src, HpErr *err) {
    *dst = *src;
    dst->params = dst->buffers = NULL, dst->provenance = NULL;
    dst->nodes = hp_alloc((size_t)src->cap_nodes, sizeof(Node), err);
    if (!dst->nodes) {
        memset(dst, 0, sizeof *dst);
        return -1;
    }
    memcpy(dst->nodes, src->nodes, (size_t)src->n_nodes * sizeof(Node));
    dst->params = dup_floats(src->params, src->n_params, err);
    dst->buffers = dst->params ? dup_floats(src->buffers, src->n_buffers, err) : NULL;
    bool copied = dst->buffers != NULL;
    if (copied && src->provenance) {
        dst->provenance = strdup(src->provenance);
        if (!dst->provenance) copied = hp_fail(err, "out of memory: cannot copy the provenance") == 0;
    }
    if (!copied) {
        model_free(dst);
        return -1;
    }
    return 0;
}

// ---- builders ----

// Fills the common fields of a node spec.
static Node spec_of(OpKind op, const char *name, int a, int b) {
    Node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    snprintf(n.name, sizeof n.name, "%s", name);
    n.in[0] = a;
    n.in[1] = b;
    return n;
}

int mb_input(Model *m, HpErr *err) {
    Node n = spec_of(OP_INPUT, "input", -1, -1);
    return model_add(m, &n, err);
}

int mb_conv(Model *m, const char *name, int in, int out_ch, int k, int stride, int pad, int groups, bool bias,
            HpErr *err) {
    Node n = spec_of(OP_CONV2D, name, in, -1);
    n.out_features = out_ch;
    n.kernel = k;
    n.stride = stride;
    n.padding = pad;
    n.groups = groups;
    n.bias = bias;
    return model_add(m, &n, err);
}

int mb_bn(Model *m, const char *name, int in, HpErr *err) {
    Node n = spec_of(OP_BATCHNORM2D, name, in, -1);
    n.eps = 1e-5f;
    n.momentum = 0.1f;
    return model_add(m, &n, err);
}

int mb_relu(Model *m, const char *name, int in, HpErr *err) {
    Node n = spec_of(OP_RELU, name, in, -1);
    return model_add(m, &n, err);
}

// Adds a pooling node of the given kind.
static int mb_pool(Model *m, OpKind op, const char *name, int in, int k, int stride, int pad, HpErr *err) {
    Node n = spec_of(op, name, in, -1);
    n.kernel = k;
    n.stride = stride;
    n.padding = pad;
    return model_add(m, &n, err);
}

int mb_maxpool(Model *m, const char *name, int in, int k, int stride, int pad, HpErr *err) {
    return mb_pool(m, OP_MAXPOOL2D, name, in, k, stride, pad, err);
}

int mb_avgpool(Model *m, const char *name, int in, int k, int stride, int pad, HpErr *err) {
    return mb_pool(m, OP_AVGPOOL2D, name, in, k, stride, pad, err);
}

int mb_gap(Model *m, const char *name, int in, HpErr *err) {
    Node n = spec_of(OP_GLOBAL_AVGPOOL, name, in, -1);
    return model_add(m, &n, err);
}

int mb_flatten(Model *m, const char *name, int in, HpErr *err) {
    Node n = spec_of(OP_FLATTEN, name, in, -1);
    return model_add(m, &n, err);
}

int mb_linear(Model *m, const char *name, int in, int out, bool bias, HpErr *err) {
    Node n = spec_of(OP_LINEAR, name, in, -1);
    n.out_features = out;
    n.bias = bias;
    return model_add(m, &n, err);
}

int mb_add(Model *m, const char *name, int a, int b, HpErr *err) {
    Node n = spec_of(OP_ADD, name, a, b);
    return model_add(m, &n, err);
}

int mb_dropout(Model *m, const char *name, int in, float p, HpErr *err) {
    Node n = spec_of(OP_DROPOUT, name, in, -1);
    n.p = p;
    return model_add(m, &n, err);
}

// ---- tensors and counts ----

// Appends one tensor reference if there is room; returns the new count.
static int push_tensor(TensorRef *out, int cap, int k, const Node *n, int node, const char *suffix, float *data,
                       size_t numel, bool is_param, int ndim, const int *shape) {
    if (out && k < cap) {
        TensorRef *t = &out[k];
        snprintf(t->name, sizeof t->name, "%s.%s", n->name, suffix);
        t->ndim = ndim;
        for (int d = 0; d < 4; d++) t->shape[d] = d < ndim ? shape[d] : 1;
        t->data = data;
        t->numel = numel;
        t->is_param = is_param;
        t->node = node;
    }
    return k + 1;
}

int model_tensors(const Model *m, TensorRef *out, int cap) {
    int k = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const Node *n = &m->nodes[i];
        float *w = m->params + n->w_off, *b = m->params + n->b_off;
        int O = n->out_features;
        if (n->op == OP_CONV2D) {
            int cin = (int)(n->w_len / ((size_t)O * (size_t)n->kernel * (size_t)n->kernel));
            int ws[4] = {O, cin, n->kernel, n->kernel};
            k = push_tensor(out, cap, k, n, i, "weight", w, n->w_len, true, 4, ws);
            if (n->b_len) k = push_tensor(out, cap, k, n, i, "bias", b, n->b_len, true, 1, &O);
        } else if (n->op == OP_LINEAR) {
            int ws[2] = {O, (int)(n->w_len / (size_t)O)};
            k = push_tensor(out, cap, k, n, i, "weight", w, n->w_len, true, 2, ws);
            if (n->b_len) k = push_tensor(out, cap, k, n, i, "bias", b, n->b_len, true, 1, &O);
        } else if (n->op == OP_BATCHNORM2D) {
            int C = n->out.c;
            k = push_tensor(out, cap, k, n, i, "weight", w, n->w_len, true, 1, &C);
            k = push_tensor(out, cap, k, n, i, "bias", b, n->b_len, true, 1, &C);
            k = push_tensor(out, cap, k, n, i, "running_mean", m->buffers + n->mean_off, (size_t)C, false, 1, &C);
            k = push_tensor(out, cap, k, n, i, "running_var", m->buffers + n->var_off, (size_t)C, false, 1, &C);
        }
    }
    return k;
}

uint64_t node_macs(const Model *m, int i) {
    const Node *n = &m->nodes[i];
    uint64_t out = shape_numel(n->out);
    switch (n->op) {
    case OP_CONV2D:
    case OP_LINEAR:
        // each output element takes (weights per output channel) multiply-adds
        return out * (uint64_t)(n->w_len / (size_t)n->out_features);
    default:
        return 0;
    }
}

size_t node_params(const Model *m, int i) { return m->nodes[i].w_len + m->nodes[i].b_len; }
