// model_io.c: model files. A model is a safetensors file (formats/safetensors.h) holding
// every tensor of model_tensors() under its PyTorch state_dict name, F32, in that order, and
// in __metadata__:
//   "hprune.graph"       the graph, as the JSON text described below (always)
//   "hprune.provenance"  m->provenance, JSON text (when not NULL)
//   "hprune.train_state" training state of a checkpoint, JSON text (when given)
//   "format"             "pt" (what PyTorch's safetensors writer puts there)
// A checkpoint also holds "optim.<tensor name>.momentum_buffer" for every trainable tensor.
//
// Graph JSON, version 1 (every key shown is required, no other key is accepted):
//   {"format": "hprune-graph", "version": 1,
//    "arch": "resnet20",                 built-in architecture name or "custom" (< 64 chars)
//    "input": [C, H, W],                 per-sample input shape, C <= 16
//    "classes": 10,
//    "normalize": {"mean": [C numbers], "std": [C numbers]},   applied to pixel/255
//    "nodes": [ ... ]}
// The input node (node 0, op "input") is implicit: it is not listed, and other nodes refer
// to it by the name "input". nodes[i] of the JSON is node i + 1 of the model, in
// topological order. Each node is an object with "name" (unique, non-empty, < 64 chars),
// "op" (an op_kind_name()), "inputs" (names of earlier nodes: two for "add", one otherwise)
// and exactly the attributes of its op:
//   conv2d       "out_channels", "kernel", "stride", "padding", "groups" (integers), "bias" (bool)
//   batchnorm2d  "eps", "momentum" (numbers)
//   maxpool2d    "kernel", "stride", "padding"
//   avgpool2d    "kernel", "stride", "padding"
//   linear       "out_features" (integer), "bias" (bool)
//   dropout      "p" (number)
//   relu, global_avgpool, flatten, add: none
// Example: {"name":"conv1","op":"conv2d","inputs":["input"],"out_channels":16,"kernel":3,
//           "stride":1,"padding":1,"groups":1,"bias":false}
// Floats are written in the shortest decimal form that reads back to the same float.
// A graph read from a file is also held to size limits (MAX_* below) so that a damaged file
// cannot ask for absurd allocations. Loading requires every model tensor with exactly its
// shape, rejects tensors the graph does not know (except "optim.*"), and takes momentum
// tensors all or none.
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "formats.h"
#include "safetensors.h"

#define GRAPH_FORMAT "hprune-graph"
#define GRAPH_VERSION 1
#define MAX_DIM_IN 65536                 // largest input height or width accepted
#define MAX_ATTR_INT (1 << 24)           // largest integer attribute accepted
#define MAX_NODE_NUMEL (1u << 28)        // largest per-sample activation of one node, in floats
#define MAX_PARAMS ((double)(1u << 30))  // largest parameter count of a graph read from a file
#define MAX_NODES 10000                  // most nodes of a graph read from a file (ResNet-56: about 200)

// ---- attribute tables ----

typedef enum { A_INT, A_BOOL, A_FLOAT } AttrType;

// One attribute of an op: its JSON key, its type and where it lives in a Node.
typedef struct {
    const char *key;
    AttrType type;
    size_t off;
} Attr;

static const Attr CONV_ATTRS[] = {
    {"out_channels", A_INT, offsetof(Node, out_features)}, {"kernel", A_INT, offsetof(Node, kernel)},
    {"stride", A_INT, offsetof(Node, stride)},             {"padding", A_INT, offsetof(Node, padding)},
    {"groups", A_INT, offsetof(Node, groups)},             {"bias", A_BOOL, offsetof(Node, bias)},
};
static const Attr BN_ATTRS[] = {{"eps", A_FLOAT, offsetof(Node, eps)}, {"momentum", A_FLOAT, offsetof(Node, momentum)}};
static const Attr POOL_ATTRS[] = {
    {"kernel", A_INT, offsetof(Node, kernel)},
    {"stride", A_INT, offsetof(Node, stride)},
    {"padding", A_INT, offsetof(Node, padding)},
};
static const Attr LINEAR_ATTRS[] = {{"out_features", A_INT, offsetof(Node, out_features)},
                                    {"bias", A_BOOL, offsetof(Node, bias)}};
static const Attr DROPOUT_ATTRS[] = {{"p", A_FLOAT, offsetof(Node, p)}};

// Returns the attribute table of op and its length in *n.
static const Attr *op_attrs(OpKind op, int *n) {
#define TABLE(t) (*n = (int)(sizeof t / sizeof t[0]), t)
    switch (op) {
    case OP_CONV2D: return TABLE(CONV_ATTRS);
    case OP_BATCHNORM2D: return TABLE(BN_ATTRS);
    case OP_MAXPOOL2D:
    case OP_AVGPOOL2D: return TABLE(POOL_ATTRS);
    case OP_LINEAR: return TABLE(LINEAR_ATTRS);
    case OP_DROPOUT: return TABLE(DROPOUT_ATTRS);
    default: *n = 0; return NULL;
    }
#undef TABLE
}

// Number of inputs an op takes.
static int op_inputs(OpKind op) { return op == OP_INPUT ? 0 : op == OP_ADD ? 2 : 1; }

// ---- writing the graph ----

// Returns a cJSON raw number holding f in the shortest form that reads back as f.
static cJSON *json_float(float f) {
    char buf[40];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if ((float)strtod(buf, NULL) == f) return cJSON_CreateRaw(buf);
    }
    snprintf(buf, sizeof buf, "%.17g", (double)f);  // exact: every float is a double
    return cJSON_CreateRaw(buf);
}

// Appends item to array a; false if item is NULL or cannot be added (then it is deleted).
static bool push(cJSON *a, cJSON *item) {
    if (item && cJSON_AddItemToArray(a, item)) return true;
    cJSON_Delete(item);
    return false;
}

// Adds item to object o under key; false if item is NULL or cannot be added (then it is deleted).
static bool put(cJSON *o, const char *key, cJSON *item) {
    if (item && cJSON_AddItemToObject(o, key, item)) return true;
    cJSON_Delete(item);
    return false;
}

// Returns a cJSON array of n floats, or NULL if out of memory.
static cJSON *json_floats(const float *v, int n) {
    cJSON *a = cJSON_CreateArray();
    bool ok = a != NULL;
    for (int i = 0; i < n && ok; i++) ok = push(a, json_float(v[i]));
    if (ok) return a;
    cJSON_Delete(a);
    return NULL;
}

// Name by which the graph JSON refers to node id (the implicit input node is "input").
static const char *ref_name(const Model *m, int id) { return id == 0 ? "input" : m->nodes[id].name; }

// Returns the JSON object of node i (i >= 1), or NULL if out of memory.
static cJSON *node_to_json(const Model *m, int i) {
    const Node *n = &m->nodes[i];
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddStringToObject(o, "name", n->name) && cJSON_AddStringToObject(o, "op", op_kind_name(n->op));
    cJSON *in = ok ? cJSON_AddArrayToObject(o, "inputs") : NULL;
    ok = in != NULL;
    for (int k = 0; k < n->n_in && ok; k++) ok = push(in, cJSON_CreateString(ref_name(m, n->in[k])));
    int na;
    const Attr *a = op_attrs(n->op, &na);
    for (int k = 0; k < na && ok; k++) {
        const char *p = (const char *)n + a[k].off;
        if (a[k].type == A_INT) ok = cJSON_AddNumberToObject(o, a[k].key, *(const int *)p) != NULL;
        else if (a[k].type == A_BOOL) ok = cJSON_AddBoolToObject(o, a[k].key, *(const bool *)p) != NULL;
        else ok = put(o, a[k].key, json_float(*(const float *)p));
    }
    if (ok) return o;
    cJSON_Delete(o);
    return NULL;
}

// Adds the graph's fields before "nodes" (format, version, arch, input, classes, normalize) to
// root; false if out of memory.
static bool graph_header(cJSON *root, const Model *m) {
    const int shape[3] = {m->input.c, m->input.h, m->input.w};
    bool ok = cJSON_AddStringToObject(root, "format", GRAPH_FORMAT) &&
              cJSON_AddNumberToObject(root, "version", GRAPH_VERSION) &&
              cJSON_AddStringToObject(root, "arch", m->arch) &&
              put(root, "input", cJSON_CreateIntArray(shape, 3)) &&
              cJSON_AddNumberToObject(root, "classes", m->n_classes);
    cJSON *norm = ok ? cJSON_AddObjectToObject(root, "normalize") : NULL;
    int c = m->input.c < HP_MAX_CHANNELS_IN ? m->input.c : HP_MAX_CHANNELS_IN;
    return norm && put(norm, "mean", json_floats(m->norm_mean, c)) && put(norm, "std", json_floats(m->norm_std, c));
}

char *graph_to_json(const Model *m, HpErr *err) {
    HP_ASSERT(m->n_nodes >= 1 && m->nodes[0].op == OP_INPUT);
    cJSON *root = cJSON_CreateObject();
    cJSON *nodes = root && graph_header(root, m) ? cJSON_AddArrayToObject(root, "nodes") : NULL;
    bool ok = nodes != NULL;
    for (int i = 1; i < m->n_nodes && ok; i++) ok = push(nodes, node_to_json(m, i));
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text) hp_fail(err, "out of memory: cannot build the graph JSON");
    return text;
}

// ---- reading the graph ----

// Fails unless every key of object o is one of keys[0..n) (where: "graph", "node 3 'x'").
static int only_keys(const cJSON *o, const char *const *keys, int n, const char *where, HpErr *err) {
    const cJSON *c;
    cJSON_ArrayForEach(c, o) {
        int ok = 0;
        for (int k = 0; k < n && !ok; k++) ok = strcmp(c->string, keys[k]) == 0;
        if (!ok) return hp_fail(err, "%s: unexpected key '%s'", where, c->string);
        for (const cJSON *d = c->next; d; d = d->next)
            if (strcmp(c->string, d->string) == 0) return hp_fail(err, "%s: duplicate key '%s'", where, c->string);
    }
    return 0;
}

// Reads integer key of o into *out, within [lo, hi].
static int get_int(const cJSON *o, const char *key, int lo, int hi, int *out, const char *where, HpErr *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return hp_fail(err, "%s: no '%s'", where, key);
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || d != floor(d) || d < lo || d > hi)
        return hp_fail(err, "%s: '%s' must be an integer in [%d, %d]", where, key, lo, hi);
    *out = (int)d;
    return 0;
}

// Reads a finite number into *out (checking that it fits a float).
static int get_float_item(const cJSON *v, float *out) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > FLT_MAX) return -1;
    *out = (float)v->valuedouble;
    return 0;
}

// Reads one attribute of the node at p from JSON object o.
static int get_attr(const cJSON *o, const Attr *a, char *p, const char *where, HpErr *err) {
    if (a->type == A_INT) return get_int(o, a->key, 0, MAX_ATTR_INT, (int *)p, where, err);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, a->key);
    if (!v) return hp_fail(err, "%s: no '%s'", where, a->key);
    if (a->type == A_BOOL) {
        if (!cJSON_IsBool(v)) return hp_fail(err, "%s: '%s' must be true or false", where, a->key);
        *(bool *)p = cJSON_IsTrue(v);
        return 0;
    }
    if (get_float_item(v, (float *)p) != 0) return hp_fail(err, "%s: '%s' must be a finite number", where, a->key);
    return 0;
}

// Returns the id of the node the graph JSON calls name, or -1.
static int find_node(const Model *m, const char *name) {
    if (strcmp(name, "input") == 0) return 0;
    for (int i = 1; i < m->n_nodes; i++)
        if (strcmp(m->nodes[i].name, name) == 0) return i;
    return -1;
}

// Reads the "inputs" of node spec n from o: op_inputs(n->op) names of earlier nodes.
static int get_inputs(const Model *m, const cJSON *o, Node *n, const char *where, HpErr *err) {
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "inputs");
    int want = op_inputs(n->op);
    if (!in) return hp_fail(err, "%s: no 'inputs'", where);
    if (!cJSON_IsArray(in) || cJSON_GetArraySize(in) != want)
        return hp_fail(err, "%s: 'inputs' must be an array of %d node name%s", where, want, want == 1 ? "" : "s");
    int k = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, in) {
        if (!cJSON_IsString(c)) return hp_fail(err, "%s: 'inputs' must hold node names (strings)", where);
        int id = find_node(m, c->valuestring);
        if (id < 0) return hp_fail(err, "%s: input '%.64s' is not an earlier node", where, c->valuestring);
        n->in[k++] = id;
    }
    n->n_in = want;
    return 0;
}

// Fails if node id's output or the graph's parameters so far exceed what a file may ask for.
static int check_size(const Model *m, int id, double *params, const char *where, HpErr *err) {
    const Node *n = &m->nodes[id];
    if (shape_numel(n->out) > MAX_NODE_NUMEL)
        return hp_fail(err, "%s: output %dx%dx%d is too large", where, n->out.c, n->out.h, n->out.w);
    Shape in = m->nodes[n->in[0]].out;
    if (n->op == OP_CONV2D) *params += (double)n->out_features * (in.c / n->groups) * n->kernel * n->kernel;
    if (n->op == OP_LINEAR) *params += (double)n->out_features * in.c;
    if (*params > MAX_PARAMS) return hp_fail(err, "%s: the graph has more than %.0f parameters", where, MAX_PARAMS);
    return 0;
}

// Replaces a leading "node '<name>': " of err (model_add's style) by "<where>: "; returns -1.
static int reprefix(HpErr *err, const char *name, const char *where) {
    char own[HP_MAX_NAME + 16];
    int len = snprintf(own, sizeof own, "node '%s': ", name);
    if (err && len > 0 && strncmp(err->msg, own, (size_t)len) == 0)
        memmove(err->msg, err->msg + len, strlen(err->msg + len) + 1);
    return hp_prefix(err, where);
}

// Builds a node spec from JSON object o (model node id: its JSON index + 1) and adds it to m.
static int add_node(Model *m, const cJSON *o, int id, double *params, HpErr *err) {
    char where[HP_MAX_NAME + 32];
    snprintf(where, sizeof where, "node %d", id);
    if (!cJSON_IsObject(o)) return hp_fail(err, "%s: not an object", where);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (!cJSON_IsString(name) || name->valuestring[0] == '\0' || strlen(name->valuestring) >= HP_MAX_NAME)
        return hp_fail(err, "%s: 'name' must be a string of 1 to %d characters", where, HP_MAX_NAME - 1);
    snprintf(where, sizeof where, "node %d '%s'", id, name->valuestring);
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(o, "op");
    if (!cJSON_IsString(op)) return hp_fail(err, "%s: 'op' must be a string", where);
    Node n;
    memset(&n, 0, sizeof n);
    n.op = op_kind_parse(op->valuestring);
    if (n.op == OP_COUNT) return hp_fail(err, "%s: unknown op '%.32s'", where, op->valuestring);
    if (n.op == OP_INPUT) return hp_fail(err, "%s: the input node is implicit and must not be listed", where);
    snprintf(n.name, sizeof n.name, "%s", name->valuestring);
    if (find_node(m, n.name) >= 0) return hp_fail(err, "%s: duplicate name", where);
    int na;
    const Attr *a = op_attrs(n.op, &na);
    const char *keys[3 + 8] = {"name", "op", "inputs"};
    for (int k = 0; k < na; k++) keys[3 + k] = a[k].key;
    if (only_keys(o, keys, 3 + na, where, err) != 0) return -1;
    if (get_inputs(m, o, &n, where, err) != 0) return -1;
    for (int k = 0; k < na; k++)
        if (get_attr(o, &a[k], (char *)&n + a[k].off, where, err) != 0) return -1;
    if (model_add(m, &n, err) < 0) return reprefix(err, n.name, where);
    return check_size(m, id, params, where, err);
}

// Reads an array of exactly n finite floats (key of o) into out.
static int get_floats(const cJSON *o, const char *key, int n, float *out, HpErr *err) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
        return hp_fail(err, "graph: normalize.%s must be an array of %d numbers", key, n);
    int k = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, a) {
        if (get_float_item(c, &out[k]) != 0)
            return hp_fail(err, "graph: normalize.%s[%d] is not a finite number", key, k);
        k++;
    }
    return 0;
}

// Reads the header fields (format, version, arch, input, classes, normalize) and starts m.
static int read_header(const cJSON *root, Model *m, HpErr *err) {
    static const char *const keys[] = {"format", "version", "arch", "input", "classes", "normalize", "nodes"};
    if (only_keys(root, keys, 7, "graph", err) != 0) return -1;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, GRAPH_FORMAT) != 0)
        return hp_fail(err, "graph: 'format' must be \"%s\"", GRAPH_FORMAT);
    int version = 0, classes = 0;
    if (get_int(root, "version", 0, 1 << 30, &version, "graph", err) != 0) return -1;
    if (version != GRAPH_VERSION)
        return hp_fail(err, "graph: version %d is not supported (this build reads version %d)", version, GRAPH_VERSION);
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "arch");
    if (!cJSON_IsString(arch) || strlen(arch->valuestring) >= HP_MAX_NAME)
        return hp_fail(err, "graph: 'arch' must be a string of at most %d characters", HP_MAX_NAME - 1);
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(root, "input");
    int dims[3], lim[3] = {HP_MAX_CHANNELS_IN, MAX_DIM_IN, MAX_DIM_IN};
    if (!cJSON_IsArray(in) || cJSON_GetArraySize(in) != 3)
        return hp_fail(err, "graph: 'input' must be an array [C, H, W]");
    for (int k = 0; k < 3; k++) {
        double d = cJSON_GetArrayItem(in, k)->valuedouble;
        if (!cJSON_IsNumber(cJSON_GetArrayItem(in, k)) || d != floor(d) || d < 1 || d > lim[k])
            return hp_fail(err, "graph: 'input' must be [C, H, W] with 1 <= C <= %d and 1 <= H, W <= %d",
                           HP_MAX_CHANNELS_IN, MAX_DIM_IN);
        dims[k] = (int)d;
    }
    if ((double)dims[0] * dims[1] * dims[2] > MAX_NODE_NUMEL)
        return hp_fail(err, "graph: input %dx%dx%d is too large", dims[0], dims[1], dims[2]);
    if (get_int(root, "classes", 1, MAX_ATTR_INT, &classes, "graph", err) != 0) return -1;
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalize");
    static const char *const norm_keys[] = {"mean", "std"};
    if (!cJSON_IsObject(norm)) return hp_fail(err, "graph: 'normalize' must be an object {mean, std}");
    if (only_keys(norm, norm_keys, 2, "graph: normalize", err) != 0) return -1;
    model_init(m, (Shape){dims[0], dims[1], dims[2]}, classes);
    snprintf(m->arch, sizeof m->arch, "%s", arch->valuestring);
    if (get_floats(norm, "mean", dims[0], m->norm_mean, err) != 0) return -1;
    if (get_floats(norm, "std", dims[0], m->norm_std, err) != 0) return -1;
    for (int c = 0; c < dims[0]; c++)
        if (!(m->norm_std[c] > 0)) return hp_fail(err, "graph: normalize.std[%d] must be > 0", c);
    return 0;
}

// Builds m from the parsed graph JSON root (m is started by read_header).
static int build_graph(const cJSON *root, Model *m, HpErr *err) {
    if (read_header(root, m, err) != 0) return -1;
    if (mb_input(m, err) != 0) return hp_prefix(err, "graph");
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(root, "nodes");
    if (!cJSON_IsArray(nodes)) return hp_fail(err, "graph: 'nodes' must be an array");
    const int n_nodes = cJSON_GetArraySize(nodes);
    if (n_nodes > MAX_NODES) return hp_fail(err, "graph: %d nodes, at most %d", n_nodes, MAX_NODES);
    double params = 0;
    int id = 1;
    const cJSON *c;
    cJSON_ArrayForEach(c, nodes) {
        if (add_node(m, c, id++, &params, err) != 0) return -1;
    }
    if (model_finalize(m, err) != 0) return hp_prefix(err, "graph");
    return 0;
}

int graph_from_json(Model *m, const char *json, HpErr *err) {
    memset(m, 0, sizeof *m);
    cJSON *root = cJSON_ParseWithOpts(json, NULL, true);  // nothing after the object but white space
    if (!root) return hp_fail(err, "graph is not valid JSON");
    int rc = -1;
    if (!cJSON_IsObject(root))
        hp_fail(err, "graph is not a JSON object");
    else if (json_check_nul(json, "graph", err) == 0)  // else a node name would be cut short
        rc = build_graph(root, m, err);
    cJSON_Delete(root);
    if (rc != 0) model_free(m);
    return rc;
}

// ---- model files ----

// Returns the StTensorOut of tensor t (its shape) under the given name and data.
static StTensorOut tensor_out(const TensorRef *t, const char *name, const float *data) {
    StTensorOut o;
    memset(&o, 0, sizeof o);
    o.name = name;
    o.ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) o.shape[d] = t->shape[d];
    o.data = data;
    return o;
}

// Fails unless text is NULL or valid JSON (what names it in the message).
static int check_json_text(const char *text, const char *what, HpErr *err) {
    if (!text) return 0;
    cJSON *j = cJSON_Parse(text);
    if (!j) return hp_fail(err, "%s is not valid JSON", what);
    cJSON_Delete(j);
    return 0;
}

#define MOM_NAME_CAP (HP_MAX_NAME + 16 + 32)

// Writes "optim.<name>.momentum_buffer" into buf.
static void momentum_name(const char *name, char *buf) {
    snprintf(buf, MOM_NAME_CAP, "optim.%s.momentum_buffer", name);
}

int model_save(const Model *m, const char *path, const CheckpointExtra *extra, HpErr *err) {
    const float *mom = extra ? extra->momentum : NULL;
    const char *train_state = extra ? extra->train_state_json : NULL;
    if (check_json_text(m->provenance, "provenance", err) != 0 ||
        check_json_text(train_state, "train state", err) != 0)
        return hp_prefix(err, path);
    int n = model_tensors(m, NULL, 0);
    TensorRef *refs = hp_alloc((size_t)n, sizeof *refs, err);
    StTensorOut *outs = refs ? hp_alloc((size_t)(2 * n + 1), sizeof *outs, err) : NULL;
    char(*mom_names)[MOM_NAME_CAP] = outs ? hp_alloc((size_t)n, sizeof *mom_names, err) : NULL;
    char *graph = mom_names ? graph_to_json(m, err) : NULL;
    if (!graph) {
        free(mom_names);
        free(outs);
        free(refs);
        return hp_prefix(err, path);
    }
    model_tensors(m, refs, n);
    int k = 0;
    for (int i = 0; i < n; i++) outs[k++] = tensor_out(&refs[i], refs[i].name, refs[i].data);
    for (int i = 0; mom && i < n; i++) {
        if (!refs[i].is_param) continue;
        momentum_name(refs[i].name, mom_names[i]);
        outs[k++] = tensor_out(&refs[i], mom_names[i], mom + (refs[i].data - m->params));
    }
    const char *keys[4] = {"format", "hprune.graph"}, *vals[4] = {"pt", graph};
    int nm = 2;
    if (m->provenance) {
        keys[nm] = "hprune.provenance";
        vals[nm++] = m->provenance;
    }
    if (train_state) {
        keys[nm] = "hprune.train_state";
        vals[nm++] = train_state;
    }
    int rc = st_write(path, outs, k, keys, vals, nm, err);
    free(graph);
    free(mom_names);
    free(outs);
    free(refs);
    if (rc == 0) return 0;
    // st_write's file errors (from atomic_open/atomic_commit) name path already; the rest do not.
    size_t len = strlen(path);
    if (err && strncmp(err->msg, path, len) == 0 && err->msg[len] == ':') return -1;
    return hp_prefix(err, path);
}

// Formats a shape as "[a, b]" into buf.
static void dims_str(const int64_t *d, int nd, char *buf, size_t cap) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < nd && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)d[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

// Finds tensor name in f with the shape of t; fails if it is absent (unless optional, when
// *e is NULL) or shaped otherwise.
static int find_shaped(const StFile *f, const TensorRef *t, const char *name, bool optional, const StEntry **e,
                       HpErr *err) {
    int64_t want[4];
    for (int d = 0; d < t->ndim; d++) want[d] = t->shape[d];
    char ws[96], fs[200];
    dims_str(want, t->ndim, ws, sizeof ws);
    *e = st_find(f, name);
    if (!*e) return optional ? 0 : hp_fail(err, "tensor '%s' (shape %s) is missing", name, ws);
    bool same = (*e)->ndim == t->ndim;
    for (int d = 0; same && d < t->ndim; d++) same = (*e)->shape[d] == want[d];
    if (same) return 0;
    dims_str((*e)->shape, (*e)->ndim, fs, sizeof fs);
    return hp_fail(err, "tensor '%s': expected shape %s, found %s", name, ws, fs);
}

// Fails if f holds a tensor that is neither one of refs[0..n) nor an "optim." tensor.
static int check_unknown(const StFile *f, const TensorRef *refs, int n, HpErr *err) {
    for (int i = 0; i < f->n; i++) {
        const char *name = f->entries[i].name;
        if (strncmp(name, "optim.", 6) == 0) continue;
        bool known = false;
        for (int j = 0; j < n && !known; j++) known = strcmp(refs[j].name, name) == 0;
        if (!known) return hp_fail(err, "tensor '%s' is not part of the model's graph", name);
    }
    return 0;
}

// Checks that the n values v of tensor `name` are finite: "tensor 'fc.bias': value 3 is nan (not finite)".
static int check_values(const char *name, const float *v, size_t n, HpErr *err) {
    for (size_t j = 0; j < n; j++)
        if (!isfinite(v[j])) return hp_fail(err, "tensor '%s': value %zu is %g (not finite)", name, j, (double)v[j]);
    return 0;
}

// Checks that every value of the n tensors is finite: a NaN weight would not show as NaN
// everywhere (a ReLU turns it into 0 and silently removes its channel).
static int check_finite(const TensorRef *refs, int n, HpErr *err) {
    for (int i = 0; i < n; i++)
        if (check_values(refs[i].name, refs[i].data, refs[i].numel, err) < 0) return -1;
    return 0;
}

// Loads the momentum tensors (all of them, or none) into a new n_params array *out, if out;
// their values must be finite, as the weights' (a NaN would surface as a diverged loss).
static int load_momentum(const StFile *f, const Model *m, const TensorRef *refs, int n, float **out, HpErr *err) {
    int n_param = 0, found = 0;
    const char *first_missing = NULL;
    char name[MOM_NAME_CAP];
    float *mom = out ? hp_zalloc(m->n_params, sizeof *mom, err) : NULL;
    if (out && !mom) return -1;
    for (int i = 0; i < n; i++) {
        if (!refs[i].is_param) continue;
        n_param++;
        const StEntry *e;
        momentum_name(refs[i].name, name);
        if (find_shaped(f, &refs[i], name, true, &e, err) != 0) {
            free(mom);
            return -1;
        }
        if (!e && !first_missing) first_missing = refs[i].name;
        if (!e) continue;
        found++;
        if (!mom) continue;
        float *dst = mom + (refs[i].data - m->params);
        st_copy_f32(f, e, dst);
        if (check_values(name, dst, refs[i].numel, err) < 0) {
            free(mom);
            return -1;
        }
    }
    if (found > 0 && found < n_param) {
        free(mom);
        return hp_fail(err, "momentum of tensor '%s' is missing (the file has momentum for %d of %d tensors)",
                       first_missing, found, n_param);
    }
    if (found == 0) {
        free(mom);
        mom = NULL;
    }
    if (out) *out = mom;
    return 0;
}

// Checks every batchnorm running variance is finite and not negative (else normalisation divides
// by the square root of a negative number or of NaN).
static int check_running_var(const Model *m, HpErr *err) {
    for (int i = 0; i < m->n_nodes; i++) {
        const Node *n = &m->nodes[i];
        if (n->op != OP_BATCHNORM2D) continue;
        for (int c = 0; c < n->out.c; c++) {
            float v = m->buffers[n->var_off + (size_t)c];
            if (!(v >= 0.0f) || isinf(v))
                return hp_fail(err, "tensor '%s.running_var': channel %d is %g, not a variance", n->name, c, (double)v);
        }
    }
    return 0;
}

// Copies every model tensor from f into m (shapes checked; values finite), and checks for
// unknown ones.
static int load_tensors(const StFile *f, Model *m, float **momentum, HpErr *err) {
    int n = model_tensors(m, NULL, 0);
    TensorRef *refs = hp_alloc((size_t)n, sizeof *refs, err);
    if (!refs) return -1;
    model_tensors(m, refs, n);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const StEntry *e;
        rc = find_shaped(f, &refs[i], refs[i].name, false, &e, err);
        if (rc == 0) st_copy_f32(f, e, refs[i].data);
    }
    if (rc == 0) rc = check_unknown(f, refs, n, err);
    if (rc == 0) rc = check_finite(refs, n, err);
    if (rc == 0) rc = check_running_var(m, err);
    if (rc == 0) rc = load_momentum(f, m, refs, n, momentum, err);
    free(refs);
    return rc;
}

// Sets *out to a malloc'd copy of s, or NULL if s is NULL; -1 (*out NULL) if out of memory.
static int dup_or_null(const char *s, char **out, HpErr *err) {
    *out = NULL;
    if (!s) return 0;
    size_t n = strlen(s) + 1;
    if (!(*out = hp_alloc(n, 1, err))) return -1;
    memcpy(*out, s, n);
    return 0;
}

// model_load without the path prefix on errors.
static int load_file(Model *m, const char *path, float **momentum, char **train_state, HpErr *err) {
    StFile f;
    if (st_read(path, &f, err) != 0) return -1;
    const char *graph = st_meta(&f, "hprune.graph");
    int rc = 0;
    if (!graph) rc = hp_fail(err, "not an hprune model: no 'hprune.graph' in __metadata__");
    else if (graph_from_json(m, graph, err) != 0) rc = hp_prefix(err, "hprune.graph");
    if (rc == 0) rc = load_tensors(&f, m, momentum, err);
    if (rc == 0) rc = dup_or_null(st_meta(&f, "hprune.provenance"), &m->provenance, err);
    if (rc == 0 && train_state) rc = dup_or_null(st_meta(&f, "hprune.train_state"), train_state, err);
    st_free(&f);
    return rc;
}

int model_load(Model *m, const char *path, float **momentum, char **train_state, HpErr *err) {
    memset(m, 0, sizeof *m);
    if (momentum) *momentum = NULL;
    if (train_state) *train_state = NULL;
    if (load_file(m, path, momentum, train_state, err) == 0) return 0;
    model_free(m);
    if (momentum) {
        free(*momentum);
        *momentum = NULL;
    }
    return hp_prefix(err, path);
}
