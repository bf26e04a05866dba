// nn.h: the model graph, its one parameter buffer, the activation workspace and the
// forward/backward passes over the whole graph. Tensors are float32, NCHW, C-order.
#ifndef HP_NN_H
#define HP_NN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "rng.h"

#define HP_MAX_NAME 64
#define HP_MAX_CHANNELS_IN 16  // most input channels a model accepts (for normalisation stats)

// The op kinds of the graph. Keep op_kind_name() and the model file in step with this list.
typedef enum {
    OP_INPUT,
    OP_CONV2D,
    OP_BATCHNORM2D,
    OP_RELU,
    OP_MAXPOOL2D,
    OP_AVGPOOL2D,
    OP_GLOBAL_AVGPOOL,
    OP_LINEAR,
    OP_FLATTEN,
    OP_ADD,
    OP_DROPOUT,
    OP_COUNT
} OpKind;

// The shape of one sample: channels, height, width (a vector of F features is (F, 1, 1)).
typedef struct {
    int c, h, w;
} Shape;

static inline size_t shape_numel(Shape s) { return (size_t)s.c * (size_t)s.h * (size_t)s.w; }

// One node of the DAG. Attributes not used by an op are zero.
typedef struct {
    OpKind op;
    char name[HP_MAX_NAME];  // PyTorch module path, e.g. "layer1.0.conv1"
    int in[2];               // input node ids (in[1] for OP_ADD only), -1 when absent
    int n_in;
    Shape out;               // per-sample output shape, inferred when the node is added
    // attributes
    int out_features;        // conv: output channels; linear: output features
    int kernel, stride, padding, groups;  // conv and pooling
    bool bias;               // conv and linear
    float eps, momentum;     // batchnorm (PyTorch semantics: running = (1-m) running + m batch)
    float p;                 // dropout probability
    // views into Model.params (offset, length); length 0 when absent
    size_t w_off, w_len, b_off, b_len;
    // views into Model.buffers: batchnorm running mean and running variance (length out.c)
    size_t mean_off, var_off;
} Node;

// A model: the DAG in topological order (node 0 is the input), one parameter buffer,
// one buffer of non-trainable state (batchnorm running statistics), and input normalisation.
typedef struct {
    char arch[HP_MAX_NAME];  // built-in architecture name, or "custom"
    Shape input;
    int n_classes;
    float norm_mean[HP_MAX_CHANNELS_IN];  // per input channel, applied to pixel/255
    float norm_std[HP_MAX_CHANNELS_IN];
    Node *nodes;
    int n_nodes, cap_nodes;
    float *params;  // all trainable weights, contiguous
    size_t n_params;
    float *buffers;  // batchnorm running statistics
    size_t n_buffers;
    char *provenance;  // JSON text carried through the model file (may be NULL)
} Model;

// Returns the op's name as written in the model file ("conv2d", "batchnorm2d", ...).
const char *op_kind_name(OpKind op);
// Parses an op name; returns OP_COUNT if unknown.
OpKind op_kind_parse(const char *name);

// ---- building a graph ----

// Starts an empty model for inputs of the given shape and class count (normalisation 0/1).
void model_init(Model *m, Shape input, int n_classes);
// Frees everything the model owns; leaves it zeroed.
void model_free(Model *m);
// Validates spec (inputs exist, attributes fit the input shape), infers its output shape,
// appends it. Returns the new node id, or -1 with err set. Parameters are laid out later.
int model_add(Model *m, const Node *spec, HpErr *err);
// Lays out parameter and buffer views in node order, allocates both buffers (zeroed,
// batchnorm weight 1 and running variance 1). Returns 0, or -1 if the graph is unusable
// (its last node is not (n_classes, 1, 1)) or out of memory. model_layout + model_alloc.
int model_finalize(Model *m, HpErr *err);
// model_finalize's first half: checks the graph and lays out the views (n_params, n_buffers),
// allocating nothing (params and buffers are freed and left NULL), so a caller can see what
// the buffers will cost (model_bytes) before paying it. Returns 0, or -1 with err set.
int model_layout(Model *m, HpErr *err);
// model_finalize's second half: allocates the buffers model_layout sized and sets their
// initial values. Returns 0, or -1 with err set (out of memory; params and buffers NULL).
int model_alloc(Model *m, HpErr *err);
// Bytes of the parameter and buffer arrays (what model_alloc allocates).
size_t model_bytes(const Model *m);
// Initialises parameters: Kaiming-normal (fan_out, ReLU) for conv, PyTorch's uniform for
// linear, zero biases, batchnorm weight 1 and bias 0. Running statistics reset to 0/1.
void model_init_params(Model *m, Rng *rng);
// Deep copy of src into dst (dst is overwritten, not freed first). Returns 0, or -1 with err
// set (out of memory; dst is then empty).
int model_copy(Model *dst, const Model *src, HpErr *err);

// Shorthand builders: each returns the node id or -1 with err set.
int mb_input(Model *m, HpErr *err);
int mb_conv(Model *m, const char *name, int in, int out_ch, int k, int stride, int pad, int groups, bool bias, HpErr *err);
int mb_bn(Model *m, const char *name, int in, HpErr *err);
int mb_relu(Model *m, const char *name, int in, HpErr *err);
int mb_maxpool(Model *m, const char *name, int in, int k, int stride, int pad, HpErr *err);
int mb_avgpool(Model *m, const char *name, int in, int k, int stride, int pad, HpErr *err);
int mb_gap(Model *m, const char *name, int in, HpErr *err);
int mb_flatten(Model *m, const char *name, int in, HpErr *err);
int mb_linear(Model *m, const char *name, int in, int out, bool bias, HpErr *err);
int mb_add(Model *m, const char *name, int a, int b, HpErr *err);
int mb_dropout(Model *m, const char *name, int in, float p, HpErr *err);

// Builds a built-in architecture ("lenet5", "vgg11", "resnet20", "resnet32", "resnet56")
// for the given input shape and class count, finalized, parameters not yet initialised.
int arch_build(Model *m, const char *arch, Shape input, int n_classes, HpErr *err);
// arch_build without the allocation of the parameters (model_layout instead of model_finalize):
// the graph, its shapes and n_params, for sizing a run before it starts; model_alloc completes it.
int arch_layout(Model *m, const char *arch, Shape input, int n_classes, HpErr *err);
// Lists the built-in architecture names, NULL-terminated.
const char *const *arch_names(void);

// ---- named tensors (the model file's view of the buffers) ----

typedef struct {
    char name[HP_MAX_NAME + 16];  // e.g. "layer1.0.bn1.running_mean"
    int ndim;
    int shape[4];
    float *data;     // points into Model.params or Model.buffers
    size_t numel;
    bool is_param;   // false for running statistics
    int node;        // owning node id
} TensorRef;

// Fills out[] with every tensor of the model in node order (params and buffers interleaved as
// PyTorch's state_dict does); returns the count. out may be NULL to just count.
int model_tensors(const Model *m, TensorRef *out, int cap);

// Multiply-accumulates of one sample's forward pass through node i.
uint64_t node_macs(const Model *m, int i);
// Parameter count of node i (weights and biases).
size_t node_params(const Model *m, int i);

// ---- running the graph ----

typedef enum {
    MODE_EVAL,        // batchnorm uses running statistics; dropout off
    MODE_TRAIN,       // batch statistics, running statistics updated; dropout on
    MODE_BATCHSTATS,  // batch statistics, running statistics untouched; dropout off
    MODE_INFER,       // as MODE_EVAL for inference only: no backward or R-operator may follow, and only
                      // the logits are defined (batchnorm is folded into the convolution before it,
                      // a residual add into the convolution before it when its other input is
                      // already computed, a ReLU into the convolution or add before it)
} Mode;

// Activations and scratch for one batch size, allocated once and reused for every batch.
typedef struct {
    int batch;        // largest N this workspace takes
    int n_threads;    // OpenMP threads it was sized for
    float **act;      // act[i]: output of node i, (N, out.c, out.h, out.w)
    float **grad;     // grad[i]: loss gradient with respect to act[i]; not written for a batchnorm
                      // whose only reader is a ReLU (MODE_EVAL, MODE_TRAIN: it reads the ReLU's)
    float **aux;      // aux[i]: op state saved by forward (bn: mean, invstd; pool: argmax; dropout: mask)
    bool *fresh;      // fresh[i]: during backward, grad[i] holds no contribution yet (its next writer assigns)
    int *sole;        // sole[i]: the node that alone consumes node i's output, or -1 (none, several)
    bool *skip;       // skip[i]: during a MODE_INFER forward, node i was computed by a fused predecessor
    float *col;       // per-thread im2col scratch, n_threads * col_stride floats
    size_t col_stride;
    float *wscratch;  // per-thread parameter-gradient partial sums, n_threads * wscratch_stride
    size_t wscratch_stride;
    float *block;     // the single allocation behind all of the above
    size_t block_len;
    Mode last_mode;   // mode of the last forward pass
    int last_n;       // batch size of the last forward pass
    // R-operator state (allocated by ws_enable_rop): R{act}, R{grad}, op R-state (bn: mean(R{x}), mean(xhat R{x})).
    // A batchnorm whose only reader is a ReLU leaves its R{act} unwritten, and in MODE_EVAL its R{grad}.
    float **ract, **rgrad, **raux;
    bool *rfresh;  // as fresh, for rgrad
    float *rblock;
} Workspace;

// Sizes a workspace for batches of up to `batch` samples on `n_threads` threads. Returns 0, or
// -1 with err set (out of memory; ws is then empty, and ws_free on it is harmless).
int ws_init(Workspace *ws, const Model *m, int batch, int n_threads, HpErr *err);
void ws_free(Workspace *ws);
// Bytes ws_init(ws, m, batch, n_threads) allocates (SIZE_MAX if that overflows), computed as it
// sizes them: what a command checks against the machine's memory before it starts.
size_t ws_bytes(const Model *m, int batch, int n_threads);

// Forward pass: x is (N, C, H, W), already normalised; N <= ws->batch. Returns the logits,
// (N, n_classes), owned by the workspace. rng draws dropout masks (MODE_TRAIN only; may be
// NULL when the model has no dropout). MODE_TRAIN updates the running statistics. MODE_INFER
// gives MODE_EVAL's logits (to rounding) faster, without what backward would need.
const float *model_forward(Model *m, Workspace *ws, const float *x, int N, Mode mode, Rng *rng);
// Backward pass through the last forward: dlogits is (N, n_classes). Accumulates the
// parameter gradient into grad (n_params floats, added to what is there). If dx is not
// NULL, writes the input gradient (N, C, H, W) there.
void model_backward(const Model *m, Workspace *ws, const float *dlogits, float *grad, float *dx);

// ---- curvature products (Pearlmutter's R-operator) ----

// Allocates the R-operator buffers of a workspace (once; later calls do nothing). Returns 0,
// or -1 with err set (out of memory; the workspace is as it was).
int ws_enable_rop(Workspace *ws, const Model *m, HpErr *err);
// Bytes ws_enable_rop allocates on a workspace for batches of `batch` (SIZE_MAX on overflow).
size_t ws_rop_bytes(const Model *m, int batch);
// R-forward through the last forward pass (MODE_EVAL or MODE_BATCHSTATS) along the parameter
// direction v (n_params floats): fills R{act} (R{input} = 0; see Workspace for the nodes it
// skips). Returns R{logits}, (N, n_classes).
const float *model_rforward(const Model *m, Workspace *ws, const float *v);
// Backward and R-backward together through the last forward (MODE_EVAL or MODE_BATCHSTATS) and
// R-forward passes: dlogits
// and rdlogits are (N, n_classes). Accumulates H v into hv and, if grad is not NULL, the
// gradient into grad (n_params floats each, added to what is there). If grads_ready, the
// workspace already holds the ordinary backward of dlogits through this forward pass (from
// model_backward or an earlier model_rbackward) and it is not recomputed (grad is then unused).
void model_rbackward(const Model *m, Workspace *ws, const float *v, const float *dlogits, const float *rdlogits,
                     float *hv, float *grad, bool grads_ready);

// ---- loss ----

// Softmax cross-entropy, mean over the batch, with label smoothing s (target (1-s) on the
// label, s/K spread over all K classes). logits (N, K); labels (N). Writes dlogits (N, K)
// when not NULL. Returns the mean loss; *correct (if not NULL) gets the count of argmax hits.
float softmax_xent(const float *logits, const int *labels, int N, int K, float smoothing,
                   float *dlogits, int *correct);

// The loss Hessian with respect to the logits applied to R{z}: rdlogits (N, K) =
// (diag(p) - p p^T) R{z} / N per sample, p = softmax(z). Label smoothing does not change it.
void softmax_xent_rop(const float *logits, const float *rlogits, int N, int K, float *rdlogits);

#endif
