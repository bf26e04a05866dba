// test_model_io.c: model files (safetensors + graph JSON): bit-exact round trips and the errors
// a damaged or foreign file must give.
#include "testutil.h"

#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "formats/formats.h"
#include "formats/safetensors.h"
#include "formats/table.h"

// Builds a small finalized model with every kind of node that carries state, and an add.
static void build_small(Model *m) {
    HpErr err = {{0}};
    model_init(m, (Shape){3, 8, 8}, 5);
    snprintf(m->arch, sizeof m->arch, "custom");
    const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, std[3] = {0.247f, 0.2435f, 0.2616f};
    memcpy(m->norm_mean, mean, sizeof mean);
    memcpy(m->norm_std, std, sizeof std);
    int x = mb_input(m, &err);
    int c1 = mb_conv(m, "conv1", x, 8, 3, 1, 1, 1, false, &err);
    int b1 = mb_bn(m, "bn1", c1, &err);
    int r1 = mb_relu(m, "relu1", b1, &err);
    int c2 = mb_conv(m, "layer1.0.conv2", r1, 8, 3, 1, 1, 2, true, &err);
    int a = mb_add(m, "layer1.0.add", r1, c2, &err);
    int p = mb_maxpool(m, "pool", a, 2, 2, 0, &err);
    int ap = mb_avgpool(m, "avg", p, 3, 1, 1, &err);
    int d = mb_dropout(m, "drop", ap, 0.25f, &err);
    int f = mb_flatten(m, "flatten", d, &err);
    int l = mb_linear(m, "fc", f, 5, true, &err);
    if (l < 0) fprintf(stderr, "build_small: %s\n", err.msg);
    assert_true(l > 0);
    assert_int_equal(model_finalize(m, &err), 0);
    Rng rng;
    rng_seed(&rng, 7, 0);
    tu_fill_uniform(m->params, m->n_params, -2, 2, &rng);
    tu_fill_uniform(m->buffers, m->n_buffers, 0.1f, 3, &rng);
}

// Asserts that two graphs are the same, node by node, and carry the same header fields.
static void assert_same_graph(const Model *a, const Model *b) {
    assert_string_equal(a->arch, b->arch);
    assert_int_equal(a->input.c, b->input.c);
    assert_int_equal(a->input.h, b->input.h);
    assert_int_equal(a->input.w, b->input.w);
    assert_int_equal(a->n_classes, b->n_classes);
    assert_memory_equal(a->norm_mean, b->norm_mean, sizeof a->norm_mean);
    assert_memory_equal(a->norm_std, b->norm_std, sizeof a->norm_std);
    assert_int_equal(a->n_nodes, b->n_nodes);
    for (int i = 0; i < a->n_nodes; i++) {
        const Node *x = &a->nodes[i], *y = &b->nodes[i];
        assert_int_equal(x->op, y->op);
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->n_in, y->n_in);
        assert_int_equal(x->in[0], y->in[0]);
        assert_int_equal(x->in[1], y->in[1]);
        assert_int_equal(x->out.c, y->out.c);
        assert_int_equal(x->out.h, y->out.h);
        assert_int_equal(x->out.w, y->out.w);
        assert_int_equal(x->out_features, y->out_features);
        assert_int_equal(x->kernel, y->kernel);
        assert_int_equal(x->stride, y->stride);
        assert_int_equal(x->padding, y->padding);
        assert_int_equal(x->groups, y->groups);
        assert_int_equal(x->bias, y->bias);
        assert_memory_equal(&x->eps, &y->eps, sizeof x->eps);
        assert_memory_equal(&x->momentum, &y->momentum, sizeof x->momentum);
        assert_memory_equal(&x->p, &y->p, sizeof x->p);
        assert_int_equal(x->w_off, y->w_off);
        assert_int_equal(x->w_len, y->w_len);
        assert_int_equal(x->b_off, y->b_off);
        assert_int_equal(x->b_len, y->b_len);
        assert_int_equal(x->mean_off, y->mean_off);
        assert_int_equal(x->var_off, y->var_off);
    }
    assert_int_equal(a->n_params, b->n_params);
    assert_int_equal(a->n_buffers, b->n_buffers);
}

// Save then load: graph, every tensor (bit-exact), momentum, train state and provenance.
static void test_save_load(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    Model m;
    build_small(&m);
    const char *prov = "{\"tool\": \"hprune\", \"seed\": 7}";
    m.provenance = strdup(prov);
    float *mom = malloc(m.n_params * sizeof *mom);
    Rng rng;
    rng_seed(&rng, 9, 0);
    tu_fill_uniform(mom, m.n_params, -1, 1, &rng);
    CheckpointExtra extra = {.momentum = mom, .train_state_json = "{\"epoch\": 3}"};
    HpErr err = {{0}};
    int rc = model_save(&m, path, &extra, &err);
    if (rc != 0) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(access(path, F_OK), 0);

    Model r;
    float *rmom = NULL;
    char *ts = NULL;
    rc = model_load(&r, path, &rmom, &ts, &err);
    if (rc != 0) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_same_graph(&m, &r);
    assert_memory_equal(m.params, r.params, m.n_params * sizeof(float));
    assert_memory_equal(m.buffers, r.buffers, m.n_buffers * sizeof(float));
    assert_non_null(rmom);
    assert_memory_equal(mom, rmom, m.n_params * sizeof(float));
    assert_string_equal(ts, "{\"epoch\": 3}");
    assert_string_equal(r.provenance, prov);

    // the file is plain safetensors: names and shapes as model_tensors gives them
    StFile f;
    assert_int_equal(st_read(path, &f, &err), 0);
    int n = model_tensors(&m, NULL, 0);
    TensorRef *refs = calloc((size_t)n, sizeof *refs);
    model_tensors(&m, refs, n);
    for (int i = 0; i < n; i++) {
        const StEntry *e = st_find(&f, refs[i].name);
        assert_non_null(e);
        assert_int_equal(e->ndim, refs[i].ndim);
        for (int d = 0; d < e->ndim; d++) assert_int_equal(e->shape[d], refs[i].shape[d]);
    }
    assert_non_null(st_find(&f, "conv1.weight"));
    assert_non_null(st_find(&f, "bn1.running_var"));
    assert_non_null(st_find(&f, "optim.layer1.0.conv2.bias.momentum_buffer"));
    assert_null(st_find(&f, "optim.bn1.running_mean.momentum_buffer"));
    st_free(&f);
    free(refs);
    free(rmom);
    free(ts);
    model_free(&r);

    // without extras: no momentum, no train state; provenance NULL stays NULL
    free(m.provenance);
    m.provenance = NULL;
    assert_int_equal(model_save(&m, path, NULL, &err), 0);
    rmom = (float *)&err;  // must be overwritten
    ts = (char *)&err;
    assert_int_equal(model_load(&r, path, &rmom, &ts, &err), 0);
    assert_null(rmom);
    assert_null(ts);
    assert_null(r.provenance);
    assert_memory_equal(m.params, r.params, m.n_params * sizeof(float));
    model_free(&r);
    assert_int_equal(model_load(&r, path, NULL, NULL, &err), 0);
    model_free(&r);

    free(mom);
    model_free(&m);
    tu_rmtree(dir);
}

// graph_to_json then graph_from_json gives the same graph and the same text.
static void test_graph_json_round_trip(void **state) {
    (void)state;
    Model m, r;
    build_small(&m);
    snprintf(m.arch, sizeof m.arch, "resnet20");
    char *text = graph_to_json(&m, NULL);
    assert_non_null(text);
    HpErr err = {{0}};
    int rc = graph_from_json(&r, text, &err);
    if (rc != 0) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_same_graph(&m, &r);
    char *again = graph_to_json(&r, NULL);
    assert_non_null(again);
    assert_string_equal(text, again);
    // documented shape of the text
    cJSON *j = cJSON_Parse(text);
    assert_string_equal(cJSON_GetObjectItem(j, "format")->valuestring, "hprune-graph");
    assert_int_equal(cJSON_GetObjectItem(j, "version")->valueint, 1);
    cJSON *n0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "nodes"), 0);
    assert_string_equal(cJSON_GetObjectItem(n0, "name")->valuestring, "conv1");
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(n0, "inputs"), 0)->valuestring, "input");
    assert_non_null(strstr(text, "\"eps\":1e-05"));
    assert_non_null(strstr(text, "\"momentum\":0.1"));
    cJSON_Delete(j);
    free(text);
    free(again);
    model_free(&r);
    model_free(&m);
}

// Returns a copy of s with the first occurrence of from replaced by to (which must occur).
static char *replace(const char *s, const char *from, const char *to) {
    const char *at = strstr(s, from);
    assert_non_null(at);
    size_t n = strlen(s) - strlen(from) + strlen(to) + 1, pre = (size_t)(at - s);
    char *out = malloc(n);
    memcpy(out, s, pre);
    strcpy(out + pre, to);
    strcat(out, at + strlen(from));
    return out;
}

#define HDR                                                                                           \
    "{\"format\":\"hprune-graph\",\"version\":1,\"arch\":\"custom\",\"input\":[1,4,4],\"classes\":3," \
    "\"normalize\":{\"mean\":[0.5],\"std\":[0.25]},\"nodes\":["
#define FLAT "{\"name\":\"flat\",\"op\":\"flatten\",\"inputs\":[\"input\"]}"
#define FC "{\"name\":\"fc\",\"op\":\"linear\",\"inputs\":[\"flat\"],\"out_features\":3,\"bias\":true}"

// Graph JSON that is wrong in one way each gives one clear error.
static void test_graph_json_errors(void **state) {
    (void)state;
    Model m, ok;
    build_small(&m);
    char *text = graph_to_json(&m, NULL);
    assert_non_null(text);
    char *bad = replace(text, "\"op\":\"relu\"", "\"op\":\"conv3d\"");
    HpErr err = {{0}};
    assert_int_equal(graph_from_json(&ok, bad, &err), -1);
    assert_string_equal(err.msg, "node 3 'relu1': unknown op 'conv3d'");
    assert_int_equal(ok.n_nodes, 0);
    assert_null(ok.nodes);
    free(bad);
    free(text);
    model_free(&m);

    static const struct {
        const char *json, *want;
    } cases[] = {
        {HDR FLAT "," FC "]}", NULL},  // the valid base
        {"{\"format\":", "graph is not valid JSON"},
        {"[1]", "graph is not a JSON object"},
        {HDR FLAT "," FC "],\"extra\":1}", "graph: unexpected key 'extra'"},
        {"{\"format\":\"onnx\",\"version\":1,\"arch\":\"custom\",\"input\":[1,4,4],\"classes\":3,"
         "\"normalize\":{\"mean\":[0.5],\"std\":[0.25]},\"nodes\":[" FLAT "," FC "]}",
         "'format' must be \"hprune-graph\""},
        {"{\"format\":\"hprune-graph\",\"version\":2,\"arch\":\"custom\",\"input\":[1,4,4],\"classes\":3,"
         "\"normalize\":{\"mean\":[0.5],\"std\":[0.25]},\"nodes\":[" FLAT "," FC "]}",
         "version 2 is not supported"},
        {"{\"format\":\"hprune-graph\",\"version\":1,\"arch\":\"custom\",\"input\":[1,4],\"classes\":3,"
         "\"normalize\":{\"mean\":[0.5],\"std\":[0.25]},\"nodes\":[" FLAT "," FC "]}",
         "'input' must be an array [C, H, W]"},
        {"{\"format\":\"hprune-graph\",\"version\":1,\"arch\":\"custom\",\"input\":[1,4,4],\"classes\":3,"
         "\"normalize\":{\"mean\":[0.5,0.5],\"std\":[0.25]},\"nodes\":[" FLAT "," FC "]}",
         "normalize.mean must be an array of 1 numbers"},
        {"{\"format\":\"hprune-graph\",\"version\":1,\"arch\":\"custom\",\"input\":[1,4,4],\"classes\":3,"
         "\"normalize\":{\"mean\":[0.5],\"std\":[0]},\"nodes\":[" FLAT "," FC "]}",
         "normalize.std[0] must be > 0"},
        {"{\"format\":\"hprune-graph\",\"version\":1,\"arch\":\"custom\",\"input\":[1,4,4],"
         "\"normalize\":{\"mean\":[0.5],\"std\":[0.25]},\"nodes\":[" FLAT "," FC "]}",
         "graph: no 'classes'"},
        {HDR FLAT "," FLAT "]}", "node 2 'flat': duplicate name"},
        {HDR "{\"name\":\"input\",\"op\":\"relu\",\"inputs\":[\"input\"]}]}", "node 1 'input': duplicate name"},
        {HDR "{\"name\":\"x\",\"op\":\"input\",\"inputs\":[]}]}", "node 1 'x': the input node is implicit"},
        {HDR "{\"name\":\"flat\",\"op\":\"flatten\",\"inputs\":[\"nowhere\"]}]}",
         "node 1 'flat': input 'nowhere' is not an earlier node"},
        {HDR "{\"name\":\"flat\",\"op\":\"flatten\",\"inputs\":[\"flat\"]}]}",
         "node 1 'flat': input 'flat' is not an earlier node"},
        {HDR "{\"name\":\"flat\",\"op\":\"flatten\"}]}", "node 1 'flat': no 'inputs'"},
        {HDR "{\"name\":\"a\",\"op\":\"add\",\"inputs\":[\"input\"]}]}",
         "node 1 'a': 'inputs' must be an array of 2 node names"},
        {HDR "{\"name\":\"flat\",\"op\":\"flatten\",\"inputs\":[7]}]}", "'inputs' must hold node names"},
        {HDR "{\"op\":\"flatten\",\"inputs\":[\"input\"]}]}", "node 1: 'name' must be a string"},
        {HDR "{\"name\":\"\",\"op\":\"flatten\",\"inputs\":[\"input\"]}]}", "node 1: 'name' must be a string"},
        {HDR "{\"name\":\"f\",\"op\":3,\"inputs\":[\"input\"]}]}", "node 1 'f': 'op' must be a string"},
        {HDR "7]}", "node 1: not an object"},
        {HDR FLAT ",{\"name\":\"fc\",\"op\":\"linear\",\"inputs\":[\"flat\"],\"bias\":true}]}",
         "node 2 'fc': no 'out_features'"},
        {HDR FLAT ",{\"name\":\"fc\",\"op\":\"linear\",\"inputs\":[\"flat\"],\"out_features\":\"3\",\"bias\":true}]}",
         "node 2 'fc': 'out_features' must be an integer"},
        {HDR FLAT ",{\"name\":\"fc\",\"op\":\"linear\",\"inputs\":[\"flat\"],\"out_features\":2.5,\"bias\":true}]}",
         "node 2 'fc': 'out_features' must be an integer"},
        {HDR FLAT ",{\"name\":\"fc\",\"op\":\"linear\",\"inputs\":[\"flat\"],\"out_features\":3,\"bias\":1}]}",
         "node 2 'fc': 'bias' must be true or false"},
        {HDR FLAT
         ",{\"name\":\"fc\",\"op\":\"linear\",\"inputs\":[\"flat\"],\"out_features\":3,\"bias\":true,\"kernel\":3}]}",
         "node 2 'fc': unexpected key 'kernel'"},
        {HDR "{\"name\":\"d\",\"op\":\"dropout\",\"inputs\":[\"input\"],\"p\":\"x\"}]}",
         "node 1 'd': 'p' must be a finite number"},
        {HDR "{\"name\":\"d\",\"op\":\"dropout\",\"inputs\":[\"input\"],\"p\":1.5}]}", "node 1 'd': dropout p 1.5"},
        // model_add's own check, passed through under the node's name
        {HDR "{\"name\":\"c\",\"op\":\"conv2d\",\"inputs\":[\"input\"],\"out_channels\":4,\"kernel\":7,\"stride\":1,"
             "\"padding\":0,\"groups\":1,\"bias\":false}]}",
         "node 1 'c': kernel 7 does not fit"},
        {HDR FLAT "]}", "graph: last node 'flat' gives 16x1x1, expected 3 class scores"},
        {HDR "]}", "graph: graph has no layers"},
        {HDR "{\"name\":\"c\",\"op\":\"conv2d\",\"inputs\":[\"input\"],\"out_channels\":10000000,\"kernel\":3,"
             "\"stride\":1,\"padding\":2,\"groups\":1,\"bias\":false}]}",
         "node 1 'c': output 10000000x6x6 is too large"},
        {HDR "{\"name\":\"c\",\"op\":\"conv2d\",\"inputs\":[\"input\"],\"out_channels\":4,\"kernel\":1,"
             "\"stride\":1,\"padding\":10,\"groups\":1,\"bias\":false}]}",
         "node 1 'c': padding 10 is not smaller than the kernel 1"},
        // text after the graph (here a string left open) is refused before anything reads it
        {HDR FLAT "]} \"", "graph is not valid JSON"},
        // an escaped NUL would cut the name short, so that it names another node or tensor
        {HDR "{\"name\":\"fl\\u0000at\",\"op\":\"flatten\",\"inputs\":[\"input\"]}]}",
         "graph: \"name\" holds a string with an escaped NUL (\\u0000)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&err, 0, sizeof err);
        int rc = graph_from_json(&ok, cases[i].json, &err);
        if (!cases[i].want) {
            if (rc != 0) fprintf(stderr, "base graph: %s\n", err.msg);
            assert_int_equal(rc, 0);
            model_free(&ok);
            continue;
        }
        if (rc == 0 || !strstr(err.msg, cases[i].want))
            fprintf(stderr, "case %zu: expected \"%s\", got rc %d: \"%s\"\n", i, cases[i].want, rc, err.msg);
        assert_int_equal(rc, -1);
        assert_non_null(strstr(err.msg, cases[i].want));
        assert_null(ok.nodes);
    }

    // more nodes than a graph may have (name lookups are linear: a limit keeps loading fast)
    StrBuf many = {0};
    sb_printf(&many, "%s", HDR);
    sb_printf(&many, "{\"name\":\"r0\",\"op\":\"relu\",\"inputs\":[\"input\"]},");
    for (int i = 1; i < 10001; i++)
        sb_printf(&many, "{\"name\":\"r%d\",\"op\":\"relu\",\"inputs\":[\"r%d\"]},", i, i - 1);
    sb_printf(&many, "%s]}", FLAT);
    memset(&err, 0, sizeof err);
    assert_int_equal(graph_from_json(&ok, many.s, &err), -1);
    assert_string_equal(err.msg, "graph: 10002 nodes, at most 10000");
    assert_null(ok.nodes);
    sb_free(&many);
}

// Writes m's tensors as a safetensors file, with one tensor renamed/reshaped/dropped/added
// as asked, and the given graph metadata (NULL: none).
static void write_variant(const char *path, const Model *m, const char *graph, const char *rename_from,
                          const char *rename_to, int reshape_idx, bool add_extra, bool partial_momentum) {
    int n = model_tensors(m, NULL, 0);
    TensorRef *refs = calloc((size_t)n, sizeof *refs);
    model_tensors(m, refs, n);
    StTensorOut *t = calloc((size_t)n + 2, sizeof *t);
    int k = 0;
    for (int i = 0; i < n; i++) {
        t[k].name = rename_from && strcmp(refs[i].name, rename_from) == 0 ? rename_to : refs[i].name;
        t[k].ndim = refs[i].ndim;
        for (int d = 0; d < refs[i].ndim; d++) t[k].shape[d] = refs[i].shape[d];
        if (i == reshape_idx) {  // same element count, other shape: [O, I*k*k]
            t[k].ndim = 2;
            t[k].shape[1] = (int64_t)(refs[i].numel / (size_t)refs[i].shape[0]);
        }
        t[k++].data = refs[i].data;
    }
    if (add_extra) t[k++] = (StTensorOut){.name = "stray.weight", .ndim = 1, .shape = {2}, .data = m->params};
    if (partial_momentum)
        t[k++] = (StTensorOut){.name = "optim.fc.bias.momentum_buffer", .ndim = 1, .shape = {5}, .data = m->params};
    const char *keys[1] = {"hprune.graph"}, *vals[1] = {graph};
    HpErr err = {{0}};
    int rc = st_write(path, t, k, keys, vals, graph ? 1 : 0, &err);
    if (rc != 0) fprintf(stderr, "write_variant: %s\n", err.msg);
    assert_int_equal(rc, 0);
    free(t);
    free(refs);
}

// Loads path expecting failure with a message containing want; the model is left empty.
static void expect_load_error(const char *path, const char *want) {
    Model r;
    float *mom = NULL;
    char *ts = NULL;
    HpErr err = {{0}};
    int rc = model_load(&r, path, &mom, &ts, &err);
    if (rc == 0 || !strstr(err.msg, want) || strncmp(err.msg, path, strlen(path)) != 0)
        fprintf(stderr, "expected \"%s: ...%s...\", got rc %d: \"%s\"\n", path, want, rc, err.msg);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.msg, want));
    assert_int_equal(strncmp(err.msg, path, strlen(path)), 0);  // the file is named first
    assert_null(r.nodes);
    assert_null(r.params);
    assert_null(mom);
    assert_null(ts);
}

// Files that are valid safetensors but not a loadable model of their own graph.
static void test_load_errors(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    Model m;
    build_small(&m);
    char *graph = graph_to_json(&m, NULL);
    assert_non_null(graph);

    write_variant(path, &m, graph, NULL, NULL, 0, false, false);  // conv1.weight as [8, 27]
    expect_load_error(path, "tensor 'conv1.weight': expected shape [8, 3, 3, 3], found [8, 27]");
    write_variant(path, &m, NULL, NULL, NULL, -1, false, false);
    expect_load_error(path, "not an hprune model: no 'hprune.graph' in __metadata__");
    write_variant(path, &m, graph, "fc.bias", "fc.b", -1, false, false);
    expect_load_error(path, "tensor 'fc.bias' (shape [5]) is missing");
    write_variant(path, &m, graph, NULL, NULL, -1, true, false);
    expect_load_error(path, "tensor 'stray.weight' is not part of the model's graph");
    write_variant(path, &m, graph, NULL, NULL, -1, false, true);
    expect_load_error(path, "momentum of tensor 'conv1.weight' is missing (the file has momentum for 1 of");
    char *bad = replace(graph, "\"op\":\"relu\"", "\"op\":\"conv3d\"");
    write_variant(path, &m, bad, NULL, NULL, -1, false, false);
    expect_load_error(path, "hprune.graph: node 3 'relu1': unknown op 'conv3d'");
    free(bad);
    tu_write(path, "\x02\0\0\0\0\0\0\0{}", 10);
    expect_load_error(path, "not an hprune model");
    tu_write(path, "short", 5);
    expect_load_error(path, "file has 5 bytes");
    char missing[160];
    snprintf(missing, sizeof missing, "%s/none.safetensors", dir);
    expect_load_error(missing, "cannot open");

    // the valid variant of the same file loads (optim.* tensors of a known shape are fine)
    write_variant(path, &m, graph, NULL, NULL, -1, false, false);
    Model r;
    HpErr err = {{0}};
    assert_int_equal(model_load(&r, path, NULL, NULL, &err), 0);
    model_free(&r);

    // a weight that is not finite is refused, naming its tensor and place
    TensorRef refs[16];
    int n_refs = model_tensors(&m, NULL, 0);
    assert_true(n_refs <= 16);
    model_tensors(&m, refs, n_refs);
    for (int i = 0; i < n_refs; i++)
        if (strcmp(refs[i].name, "fc.weight") == 0) refs[i].data[3] = INFINITY;
    assert_int_equal(model_save(&m, path, NULL, &err), 0);
    expect_load_error(path, "tensor 'fc.weight': value 3 is inf (not finite)");
    for (int i = 0; i < n_refs; i++)
        if (strcmp(refs[i].name, "fc.weight") == 0) refs[i].data[3] = 0.5f;

    // so is a checkpoint's optimizer state (a NaN there surfaced as a diverged loss), when it is read
    float *mom = calloc(m.n_params, sizeof *mom);
    for (int i = 0; i < n_refs; i++)
        if (strcmp(refs[i].name, "fc.bias") == 0) mom[refs[i].data - m.params + 2] = NAN;
    CheckpointExtra extra = {.momentum = mom, .train_state_json = "{}"};
    assert_int_equal(model_save(&m, path, &extra, &err), 0);
    expect_load_error(path, "tensor 'optim.fc.bias.momentum_buffer': value 2 is nan (not finite)");
    assert_int_equal(model_load(&r, path, NULL, NULL, &err), 0);
    model_free(&r);
    free(mom);

    // a FIFO is refused, not waited on for ever (the alarm ends the test if the open blocks)
    char fifo[160];
    snprintf(fifo, sizeof fifo, "%s/fifo.safetensors", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    alarm(10);
    expect_load_error(fifo, "not a regular file");
    alarm(0);

    // provenance and train state must be JSON
    m.provenance = strdup("not json");
    assert_int_equal(model_save(&m, path, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "provenance is not valid JSON"));
    free(graph);
    model_free(&m);
    tu_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_graph_json_round_trip),
        cmocka_unit_test(test_graph_json_errors),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
