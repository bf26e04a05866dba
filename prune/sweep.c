// sweep.c: the run list of a sweep, its shards, each run's job and result file, and the merge
// of the result files into tables and a chart (see sweep.h).
#include "sweep.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <zlib.h>

#include "../formats/formats.h"
#include "../formats/ini_table.h"
#include "../formats/plot.h"
#include "../formats/table.h"

// ---- runs ----

// Short name of a target kind in run ids and tables ("flops" for MACs, as on the command line).
static const char *kind_word(TargetKind k) {
    return k == TARGET_MACS ? "flops" : k == TARGET_PARAMS ? "params" : "channels";
}

// Formats a fraction as briefly as reads back exactly: "0.50", then "%.6g", then "%.17g".
static void fmt_fraction(char *buf, size_t cap, double t) {
    snprintf(buf, cap, "%.2f", t);
    if (strtod(buf, NULL) == t) return;
    snprintf(buf, cap, "%.6g", t);
    if (strtod(buf, NULL) == t) return;
    snprintf(buf, cap, "%.17g", t);
}

int sweep_runs(const SweepConfig *c, SweepRun **runs, HpErr *err) {
    int n = c->n_methods * c->n_targets * c->n_seeds, i = 0;
    SweepRun *r = hp_zalloc((size_t)n, sizeof *r, err);
    if (!r) return -1;
    for (int a = 0; a < c->n_methods; a++)
        for (int b = 0; b < c->n_targets; b++)
            for (int s = 0; s < c->n_seeds; s++, i++) {
                char t[32];
                fmt_fraction(t, sizeof t, c->targets[b]);
                r[i] = (SweepRun){.index = i, .method = &c->methods[a], .target = c->targets[b], .seed = c->seeds[s]};
                int len = snprintf(r[i].id, sizeof r[i].id, "%s-%s%s-s%llu", c->methods[a].name, kind_word(c->kind),
                                   t, (unsigned long long)c->seeds[s]);
                HP_ASSERT(len > 0 && (size_t)len < sizeof r[i].id);  // SWEEP_ID holds the longest id
            }
    *runs = r;
    return n;
}

bool sweep_in_shard(int index, int shard, int n_shards) { return index % n_shards == shard; }

// Splits "I/N" into *i and *n, each digits only (ini_u64's grammar: no sign, blanks or hex);
// false if s is not that.
static bool split_shard(const char *s, uint64_t *i, uint64_t *n) {
    char left[32];
    const char *slash = strchr(s, '/');
    size_t len = slash ? (size_t)(slash - s) : sizeof left;
    if (len >= sizeof left) return false;
    memcpy(left, s, len);
    left[len] = '\0';
    return ini_u64(left, i) == 0 && ini_u64(slash + 1, n) == 0;
}

int sweep_parse_shard(const char *s, int *shard, int *n_shards, HpErr *err) {
    uint64_t i, n;
    if (!split_shard(s, &i, &n)) return hp_fail(err, "'%s' is not I/N (shard I of N, 0-based)", s);
    if (n < 1 || n > 100000) return hp_fail(err, "'%s': N must be in [1, 100000]", s);
    if (i >= n) return hp_fail(err, "'%s': I must be in [0, %d] (shards are numbered from 0)", s, (int)n - 1);
    *shard = (int)i, *n_shards = (int)n;
    return 0;
}

// The criterion options of method m in sweep c (its own samples and probes, else c's).
static CritOpts method_crit(const SweepConfig *c, const SweepMethod *m) {
    CritOpts k = crit_defaults();
    k.method = m->criterion;
    k.normalize = m->normalize;
    k.samples = m->samples ? m->samples : c->samples;
    k.probes = m->probes ? m->probes : c->probes;
    k.ggn = m->ggn;
    k.consumers_only = m->consumers_only;
    k.fisher.n_grads = m->fisher_grads;
    k.fisher.grad_batch = m->fisher_batch;
    k.fisher.block_size = (size_t)m->block_size;
    k.fisher.damp = m->damp;
    k.damp_rel = m->layer_damp;
    k.compensate = m->compensate;
    return k;
}

PruneJob sweep_job(const SweepConfig *c, const SweepRun *r, int threads) {
    PruneJob j = prune_job_defaults();
    j.crit = method_crit(c, r->method);
    j.crit.seed = r->seed;
    j.target.kind = c->kind;
    j.target.ratio = r->target;
    j.target.max_layer_frac = c->max_layer_frac;
    j.target.per_cost = r->method->per_cost;
    j.steps = r->method->steps ? r->method->steps : c->steps;
    j.finetune = c->finetune;
    j.finetune.seed = r->seed;
    j.finetune.threads = threads;
    return j;
}

// Writes "path:line[: what]" or, for line 0, "path[: what]" (contract in sweep.h).
void sweep_config_place(const SweepConfig *c, int line, const char *what, char *buf, size_t cap) {
    int n = snprintf(buf, cap, line ? "%s:%d" : "%s", c->path, line);
    if (what && n >= 0 && (size_t)n < cap) snprintf(buf + n, cap - (size_t)n, ": %s", what);
}

// Fails unless every target of c can be reached on m (with zero scores: reachability does not
// depend on them), naming the line of `targets`.
static int check_targets(const SweepConfig *c, const Model *m, HpErr *err) {
    GroupSet gs;
    if (prune_groups(m, &gs, err) < 0) return -1;
    PruneRef ref;
    int rc = pruneref_init(&ref, m, &gs, err);
    bool **keep = rc == 0 ? hp_zalloc((size_t)gs.n_groups + 1, sizeof(bool *), err) : NULL;
    double **scores = keep ? hp_zalloc((size_t)gs.n_groups + 1, sizeof(double *), err) : NULL;
    if (!scores) rc = -1;
    for (int g = 0; g < gs.n_groups && rc == 0; g++) {
        keep[g] = hp_zalloc((size_t)gs.groups[g].n_channels, sizeof(bool), err);
        scores[g] = keep[g] ? hp_zalloc((size_t)gs.groups[g].n_channels, sizeof(double), err) : NULL;
        if (!scores[g]) rc = -1;
    }
    for (int t = 0; t < c->n_targets && rc == 0; t++) {
        PruneTarget pt = {.kind = c->kind, .ratio = c->targets[t], .max_layer_frac = c->max_layer_frac, .round_to = 1};
        HpErr e;
        if (prune_select(m, &gs, scores, &pt, &ref, keep, &e) == 0) continue;
        char where[SWEEP_PATH + 16];
        sweep_config_place(c, c->targets_line, NULL, where, sizeof where);
        rc = hp_fail(err, "%s: %s", where, e.msg);
    }
    for (int g = 0; scores && g < gs.n_groups; g++) free(keep[g]), free(scores[g]);
    free(keep), free(scores);
    pruneref_free(&ref);
    groupset_free(&gs);
    return rc;
}

// Fails unless method m's criterion can score model m on train: it scores a copy of the model
// once with the method's options but a tiny calibration (the budgets shrink, the criterion's
// checks and code paths stay), so anything the criterion refuses on this model is found now.
static int check_method_scores(const SweepConfig *c, const SweepMethod *sm, const Model *m, const Dataset *train,
                               HpErr *err) {
    CritOpts k = method_crit(c, sm);
    k.data = train;
    k.seed = c->seeds[0];
    k.samples = k.samples < SWEEP_PROBE_SAMPLES ? k.samples : SWEEP_PROBE_SAMPLES;
    k.batch = k.samples;
    k.probes = 2;
    k.fisher.n_grads = k.fisher.n_grads < SWEEP_PROBE_SAMPLES ? k.fisher.n_grads : SWEEP_PROBE_SAMPLES;
    k.fisher.block_size = k.fisher.block_size < SWEEP_PROBE_BLOCK ? k.fisher.block_size : SWEEP_PROBE_BLOCK;
    GroupSet gs;
    if (prune_groups(m, &gs, err) < 0) return -1;
    double **scores = hp_zalloc((size_t)gs.n_groups + 1, sizeof(double *), err);
    int rc = scores ? 0 : -1;
    for (int g = 0; g < gs.n_groups && rc == 0; g++) {
        scores[g] = hp_zalloc((size_t)gs.groups[g].n_channels, sizeof(double), err);
        if (!scores[g]) rc = -1;
    }
    Model copy;
    if (rc == 0) rc = model_copy(&copy, m, err);
    if (rc < 0) {  // out of memory before scoring: err says so
        for (int g = 0; scores && g < gs.n_groups; g++) free(scores[g]);
        free(scores);
        groupset_free(&gs);
        return -1;
    }
    Scorer sc;
    HpErr e;
    rc = scorer_run(&sc, &k, &copy, &gs, scores, &e);
    scorer_free(&sc);
    model_free(&copy);
    for (int g = 0; g < gs.n_groups; g++) free(scores[g]);
    free(scores);
    groupset_free(&gs);
    if (rc == 0) return 0;
    char where[SWEEP_PATH + 16];
    sweep_config_place(c, sweep_method_line(c, sm), NULL, where, sizeof where);
    return hp_fail(err, "%s: method %s cannot run on %s: %s", where, sm->name, c->model, e.msg);
}

int sweep_check(const SweepConfig *c, const Model *m, const Dataset *train, HpErr *err) {
    if (check_targets(c, m, err) < 0) return -1;
    for (int i = 0; i < c->n_methods; i++) {  // the Fisher's sizes, before any scoring shrinks them
        if (c->methods[i].criterion != CRIT_OBS) continue;
        CritOpts k = method_crit(c, &c->methods[i]);
        HpErr e;
        if (fisher_check(m, &k.fisher, &e) < 0 ||
            fisher_check_images(&k.fisher, train->n, "fisher_grads", "fisher_batch", &e) < 0 ||
            fisher_check_data(m, train, &k.fisher, &e) < 0) {
            char where[SWEEP_PATH + 16];
            sweep_config_place(c, sweep_method_line(c, &c->methods[i]), NULL, where, sizeof where);
            return hp_fail(err, "%s: method %s: %s", where, c->methods[i].name, e.msg);
        }
    }
    for (int i = 0; i < c->n_methods; i++)
        if (check_method_scores(c, &c->methods[i], m, train, err) < 0) return -1;
    return 0;
}

// ---- directories and result files ----

int sweep_fingerprint(SweepConfig *c, HpErr *err) {
    FILE *f = fopen(c->model, "rb");
    if (!f) return hp_fail(err, "%s: cannot open: %s", c->model, strerror(errno));
    unsigned char buf[1 << 16];
    uLong crc = crc32(0L, Z_NULL, 0);
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) crc = crc32(crc, buf, (uInt)got);
    bool bad = ferror(f);
    fclose(f);
    if (bad) return hp_fail(err, "%s: cannot read", c->model);
    c->model_crc = (uint32_t)crc;
    c->model_crc_known = true;
    return 0;
}

int sweep_result_path(const char *dir, const char *id, char *buf, size_t cap, HpErr *err) {
    int n = snprintf(buf, cap, "%s/runs/%s.json", dir, id);
    if (n < 0 || (size_t)n >= cap) return hp_fail(err, "%s: path too long", dir);
    return 0;
}

// Creates directory path unless it exists (one level: a missing parent is an error naming it).
static int make_dir(const char *path, HpErr *err) {
    struct stat st;
    if (stat(path, &st) == 0) return S_ISDIR(st.st_mode) ? 0 : hp_fail(err, "%s: not a directory", path);
    if (mkdir(path, 0777) == 0 || errno == EEXIST) return 0;
    int e = errno;
    char parent[SWEEP_PATH * 2];
    const char *slash = strrchr(path, '/');
    if (e == ENOENT && slash && slash > path && (size_t)(slash - path) < sizeof parent) {
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - path), path);
        return hp_fail(err, "%s: cannot create: directory %s: %s", path, parent, strerror(e));
    }
    return hp_fail(err, "%s: cannot create: %s", path, strerror(e));
}

int sweep_make_dirs(const char *dir, HpErr *err) {
    char runs[SWEEP_PATH * 2];
    if (snprintf(runs, sizeof runs, "%s/runs", dir) >= (int)sizeof runs) return hp_fail(err, "%s: path too long", dir);
    return make_dir(dir, err) < 0 ? -1 : make_dir(runs, err);
}

// The items of a run's settings that only some methods record (by the key before '='), each
// with the criterion option (criterion_option_applies) that says which criteria read it.
static const struct {
    const char *item, *option;
} METHOD_ITEMS[] = {{"samples", "samples"}, {"probes", "probes"}, {"obs_fisher", "fisher_grads"}};

// True if method m reads the per-method setting item (a key of METHOD_ITEMS): its criterion
// uses it, and for probes it estimates its diagonal (hap and obd with ggn compute it exactly).
static bool method_reads(const SweepMethod *m, const char *item) {
    for (size_t i = 0; i < sizeof METHOD_ITEMS / sizeof METHOD_ITEMS[0]; i++)
        if (strcmp(METHOD_ITEMS[i].item, item) == 0)
            return criterion_option_applies(METHOD_ITEMS[i].option, m->criterion, NULL, 0) &&
                   !(strcmp(item, "probes") == 0 && m->ggn);
    HP_ASSERT(0 && "a key of METHOD_ITEMS");
    return false;
}

// The settings run r's result depends on besides its method's name, target and seed, as one
// text of ';'-separated items: a result made with other settings is not this run's. The items
// every run reads (model, data, target kind, steps, layer cap, fine-tuning), then those only
// its method reads (METHOD_ITEMS: calibration samples, Hutchinson probes, obs's Fisher), and a
// method that is not its criterion with prune's defaults adds its criterion and options.
static void run_settings(const SweepConfig *c, const SweepRun *r, char *buf, size_t cap) {
    const SweepMethod *m = r->method;
    PruneJob j = sweep_job(c, r, 0);
    char samples[32] = "", probes[32] = "", obs[160] = "", opts[256], method[320] = "";
    if (method_reads(m, "samples")) snprintf(samples, sizeof samples, "samples=%d;", j.crit.samples);
    if (method_reads(m, "probes")) snprintf(probes, sizeof probes, "probes=%d;", j.crit.probes);
    if (method_reads(m, "obs_fisher")) {
        FisherOpts f = j.crit.fisher;
        snprintf(obs, sizeof obs, "obs_fisher=%d gradients of %d, blocks of %zu, damp %.9g;", f.n_grads, f.grad_batch,
                 f.block_size, f.damp);
    }
    sweep_method_options(m, opts, sizeof opts);
    if (opts[0] || strcmp(m->name, criterion_name(m->criterion)) != 0)
        snprintf(method, sizeof method, "method=%s%s%s;", criterion_name(m->criterion), opts[0] ? ", " : "", opts);
    snprintf(buf, cap,
             "model=%s;dataset=%s;dir=%s;target=%s;steps=%d;max_layer_frac=%.17g;%s%s%s%s"
             "finetune_epochs=%d;lr=%.9g;batch_size=%d;val_split=%.9g;weight_decay=%.9g;crop_pad=%d;hflip=%d",
             c->model, c->dataset, c->data_dir, kind_word(c->kind), j.steps, c->max_layer_frac, samples, probes, obs,
             method, c->finetune.epochs, (double)c->finetune.lr, c->finetune.batch_size,
             (double)c->finetune.val_split, (double)c->finetune.weight_decay, c->finetune.augment.crop_pad,
             (int)c->finetune.augment.hflip);
}

// The fine-tuning's items of a run's settings (run_settings) besides finetune_epochs: only
// fine-tuning reads them.
static const char *const FINETUNE_ITEMS[] = {"lr", "batch_size", "val_split", "weight_decay", "crop_pad", "hflip"};

// True if the item p[0..n) of a result's settings is one that a run of config c does not read:
// a per-method one (METHOD_ITEMS) its method m does not read (results written before settings
// were recorded per method have samples and probes for every run), or a fine-tuning one
// (FINETUNE_ITEMS) when c does not fine-tune (a result that did differs at finetune_epochs).
static bool item_unread(const char *p, size_t n, const SweepConfig *c, const SweepMethod *m) {
    size_t key = strcspn(p, "=;");
    if (key >= n) return false;
    for (size_t i = 0; i < sizeof METHOD_ITEMS / sizeof METHOD_ITEMS[0]; i++)
        if (strlen(METHOD_ITEMS[i].item) == key && strncmp(p, METHOD_ITEMS[i].item, key) == 0)
            return !method_reads(m, METHOD_ITEMS[i].item);
    for (size_t i = 0; i < sizeof FINETUNE_ITEMS / sizeof FINETUNE_ITEMS[0]; i++)
        if (strlen(FINETUNE_ITEMS[i]) == key && strncmp(p, FINETUNE_ITEMS[i], key) == 0)
            return c->finetune.epochs == 0;
    return false;
}

// Copies the settings s of a result into buf (at least strlen(s) + 1 bytes) without the items
// a run of config c with method m does not read (item_unread), in their order.
static void settings_read_by(const char *s, const SweepConfig *c, const SweepMethod *m, char *buf) {
    size_t at = 0;
    for (const char *p = s; *p;) {
        size_t n = strcspn(p, ";");
        if (!item_unread(p, n, c, m)) {
            if (at) buf[at++] = ';';
            memcpy(buf + at, p, n);
            at += n;
        }
        p += n + (p[n] == ';');
    }
    buf[at] = '\0';
}

int sweep_result_write(const char *path, const SweepConfig *c, const SweepRun *r, const PruneOutcome *o, HpErr *err) {
    char settings[4 * SWEEP_PATH], seed[32], opts[256];
    run_settings(c, r, settings, sizeof settings);
    sweep_method_options(r->method, opts, sizeof opts);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->seed);
    cJSON *j = cJSON_CreateObject();
    bool ok = j != NULL;  // every member added (cJSON fails only when out of memory)
    ok = ok && cJSON_AddStringToObject(j, "id", r->id);
    ok = ok && cJSON_AddStringToObject(j, "method", r->method->name);
    ok = ok && cJSON_AddStringToObject(j, "criterion", criterion_name(r->method->criterion));
    ok = ok && cJSON_AddStringToObject(j, "options", opts);
    ok = ok && cJSON_AddStringToObject(j, "target_kind", kind_word(c->kind));
    ok = ok && cJSON_AddNumberToObject(j, "target", r->target);
    ok = ok && cJSON_AddStringToObject(j, "seed", seed);
    ok = ok && cJSON_AddStringToObject(j, "model", c->model);
    if (c->model_crc_known) {
        char crc[9];
        snprintf(crc, sizeof crc, "%08x", (unsigned)c->model_crc);
        ok = ok && cJSON_AddStringToObject(j, "model_crc32", crc);
    }
    ok = ok && cJSON_AddStringToObject(j, "settings", settings);
    ok = ok && cJSON_AddNumberToObject(j, "params_original", (double)o->params_orig);
    ok = ok && cJSON_AddNumberToObject(j, "params", (double)o->params_pruned);
    ok = ok && cJSON_AddNumberToObject(j, "macs_original", (double)o->macs_orig);
    ok = ok && cJSON_AddNumberToObject(j, "macs", (double)o->macs_pruned);
    ok = ok && cJSON_AddNumberToObject(j, "accuracy_original", o->acc_orig);
    ok = ok && cJSON_AddNumberToObject(j, "accuracy_oneshot", o->acc_oneshot);
    ok = ok && cJSON_AddNumberToObject(j, "accuracy_recalibrated", o->acc_recal);
    ok = ok && cJSON_AddNumberToObject(j, "accuracy_finetuned", o->acc_final);
    ok = ok && cJSON_AddNumberToObject(j, "finetune_epochs", o->finetune_epochs);
    ok = ok && cJSON_AddNumberToObject(j, "best_epoch", o->best_epoch);
    ok = ok && cJSON_AddNumberToObject(j, "latency_ms_original", o->lat_orig_ms);
    ok = ok && cJSON_AddNumberToObject(j, "latency_ms", o->lat_pruned_ms);
    if (o->speedup > 0) ok = ok && cJSON_AddNumberToObject(j, "speedup", o->speedup);  // 0: not measured
    ok = ok && cJSON_AddNumberToObject(j, "score_seconds", o->score_s);
    ok = ok && cJSON_AddNumberToObject(j, "finetune_seconds", o->finetune_s);
    ok = ok && cJSON_AddNumberToObject(j, "seconds", o->total_s);
    char *text = ok ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!text) return hp_fail(err, "%s: out of memory: cannot format the result", path);
    size_t len = strlen(text);
    text[len] = '\n';  // cJSON_Print leaves room for its NUL: the newline replaces it in the file
    int rc = write_file_atomic(path, text, len + 1, err);
    free(text);
    return rc;
}

// One result file, read back.
typedef struct {
    char id[SWEEP_ID], method[32], kind[16], seed[32];
    char criterion[32], options[256];  // "" in a result file written before they were recorded
    char model[SWEEP_PATH], settings[4 * SWEEP_PATH];
    char crc[9];  // the model's CRC-32, 8 hex digits ("" in a result written before it was recorded)
    char file[SWEEP_PATH * 3];  // where it was read from
    double target, params_orig, params, macs_orig, macs, acc_orig, acc_oneshot, acc_recal, acc_final, finetune_epochs,
        best_epoch, lat_orig, lat, speedup, seconds;  // speedup: 0 in a result written before it was recorded
} SweepResult;

// Reads a whole file into a NUL-terminated malloc'd buffer of *len_out bytes (and the NUL). Returns
// it, or NULL with err set.
static char *read_text(const char *path, size_t *len_out, HpErr *err) {
    FILE *f = fopen_regular(path, NULL, err);  // a FIFO in runs/ is refused, not waited on
    if (!f) return hp_prefix(err, path), NULL;
    size_t cap = 4096, len = 0;
    char *s = hp_alloc(cap, 1, err);
    if (!s) {
        fclose(f);
        return hp_prefix(err, path), NULL;
    }
    size_t got;
    while ((got = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len - 1 == 0) {
            char *t = cap <= SIZE_MAX / 2 ? realloc(s, cap * 2) : NULL;
            if (!t) {
                free(s);
                fclose(f);
                return hp_fail(err, "%s: out of memory: cannot read the file (%zu bytes so far)", path, len), NULL;
            }
            s = t;
            cap *= 2;
        }
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(s);
        return hp_fail(err, "%s: cannot read", path), NULL;
    }
    s[len] = '\0';
    *len_out = len;
    return s;
}

// Parses text (len bytes, read from path) as one JSON object with nothing after it but white
// space, and no string in it holding an escaped NUL (which cJSON would cut it at). Returns it
// (cJSON_Delete it), or NULL with err naming path and the problem.
static cJSON *parse_object(const char *text, size_t len, const char *path, HpErr *err) {
    if (strlen(text) != len) return hp_fail(err, "%s: a NUL byte at byte %zu", path, strlen(text)), NULL;
    const char *end = text;
    cJSON *j = cJSON_ParseWithOpts(text, &end, false);
    if (!j) return hp_fail(err, "%s: not a JSON object (a syntax error at byte %zu)", path, (size_t)(end - text)), NULL;
    end += strspn(end, " \t\r\n");
    if (!cJSON_IsObject(j) || *end) {
        cJSON_Delete(j);
        if (*end) return hp_fail(err, "%s: data after the JSON object (at byte %zu)", path, (size_t)(end - text)), NULL;
        return hp_fail(err, "%s: not a JSON object", path), NULL;
    }
    if (json_check_nul(text, path, err) < 0) return cJSON_Delete(j), NULL;
    return j;
}

// Sets *v to member key of object j (NULL if it has none). Returns 0, or -1 with err set if key
// appears twice: cJSON would read the first, another reader the last.
static int json_member(const cJSON *j, const char *key, const cJSON **v, const char *path, HpErr *err) {
    *v = NULL;
    for (const cJSON *m = j->child; m; m = m->next) {
        if (strcmp(m->string, key) != 0) continue;
        if (*v) return hp_fail(err, "%s: key \"%s\" appears twice", path, key);
        *v = m;
    }
    return 0;
}

// Copies string member key of j into buf (cap bytes); an optional key may be absent (buf left
// as it is). Returns 0, or -1 with err set.
static int json_str(const cJSON *j, const char *key, bool optional, char *buf, size_t cap, const char *path,
                    HpErr *err) {
    const cJSON *v;
    if (json_member(j, key, &v, path, err) < 0) return -1;
    if (!v && optional) return 0;
    if (!cJSON_IsString(v)) return hp_fail(err, "%s: no string \"%s\"", path, key);
    if (strlen(v->valuestring) >= cap) return hp_fail(err, "%s: \"%s\" is too long", path, key);
    snprintf(buf, cap, "%s", v->valuestring);
    return 0;
}

// What a number of a result file must be.
typedef enum {
    R_TARGET,    // a fraction to remove, in (0, 1) (as [sweep] targets)
    R_ACCURACY,  // in [0, 1]
    R_COUNT,     // parameters or MACs: a positive integer below 2^53 (exact in a double, 16 digits at most)
    R_EPOCHS,    // an integer in [0, MAX_EPOCHS]
    R_LATENCY,   // positive: milliseconds (the speed-up divides by them), or a speed-up
    R_SECONDS,   // non-negative
} Range;

#define MAX_COUNT 9007199254740992.0  // 2^53
enum { MAX_EPOCHS = 10000 };          // the range of [finetune] epochs (sweep_config.c)

// Writes x into buf as briefly as reads back exactly ("416520", "0.3", "1e+308").
static void fmt_value(char *buf, size_t cap, double x) {
    if (x == floor(x) && fabs(x) <= MAX_COUNT) {
        snprintf(buf, cap, "%.0f", x);
        return;
    }
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, cap, "%.*g", digits, x);
        if (strtod(buf, NULL) == x) return;
    }
}

// Fails unless x, the number key of the result file path, is in range rg (err: "PATH: KEY X is
// not in [0, 1]").
static int check_range(double x, Range rg, const char *key, const char *path, HpErr *err) {
    static const char *const WANT[] = {
        [R_TARGET] = "is not in (0, 1)", [R_ACCURACY] = "is not in [0, 1]",
        [R_COUNT] = "is not a positive integer below 2^53", [R_EPOCHS] = "is not an integer in [0, 10000]",
        [R_LATENCY] = "is not positive", [R_SECONDS] = "is negative"};
    _Static_assert(MAX_EPOCHS == 10000, "WANT[R_EPOCHS] names MAX_EPOCHS");
    bool whole = x == floor(x);
    bool ok = rg == R_TARGET     ? x > 0 && x < 1
              : rg == R_ACCURACY ? x >= 0 && x <= 1
              : rg == R_COUNT    ? whole && x >= 1 && x < MAX_COUNT
              : rg == R_EPOCHS   ? whole && x >= 0 && x <= MAX_EPOCHS
              : rg == R_LATENCY  ? x > 0
                                 : x >= 0;
    if (ok) return 0;
    char v[32];
    fmt_value(v, sizeof v, x);
    return hp_fail(err, "%s: %s %s %s", path, key, v, WANT[rg]);
}

// Reads number member key of j into *x and checks it is finite and in range rg (-0 reads as 0).
// Returns 0, or -1 with err set.
static int json_num(const cJSON *j, const char *key, Range rg, double *x, const char *path, HpErr *err) {
    const cJSON *v;
    if (json_member(j, key, &v, path, err) < 0) return -1;
    if (!cJSON_IsNumber(v)) return hp_fail(err, "%s: no number \"%s\"", path, key);
    if (!isfinite(v->valuedouble)) return hp_fail(err, "%s: %s is not a finite number", path, key);
    *x = v->valuedouble + 0.0;
    return check_range(*x, rg, key, path, err);
}

// Reads the number speedup of j into r->speedup (absent in older results: left 0; else positive).
// Returns 0, or -1 with err set.
static int json_speedup(const cJSON *j, SweepResult *r, const char *path, HpErr *err) {
    const cJSON *v;
    if (json_member(j, "speedup", &v, path, err) < 0) return -1;
    return v ? json_num(j, "speedup", R_LATENCY, &r->speedup, path, err) : 0;
}

// Reads model_crc32 of j into r->crc (absent in older results: left ""). Returns 0 or -1.
static int json_crc(const cJSON *j, SweepResult *r, const char *path, HpErr *err) {
    const cJSON *crc;
    if (json_member(j, "model_crc32", &crc, path, err) < 0) return -1;
    if (!crc) return 0;
    const char *v = cJSON_GetStringValue(crc);
    if (!v || strlen(v) != 8 || strspn(v, "0123456789abcdef") != 8)
        return hp_fail(err, "%s: \"model_crc32\" is not a CRC-32 (8 hex digits)", path);
    memcpy(r->crc, v, sizeof r->crc);
    return 0;
}

// Reads every field of result object j into r, each number checked against its range (the
// scoring and fine-tuning times too, which no table shows). Returns 0, or -1 with err naming
// path and the first bad field.
static int read_fields(const cJSON *j, SweepResult *r, const char *path, HpErr *err) {
    double score_s, finetune_s;
    struct { const char *key; char *buf; size_t cap; bool optional; } strs[] = {
        {"id", r->id, sizeof r->id, false}, {"method", r->method, sizeof r->method, false},
        {"criterion", r->criterion, sizeof r->criterion, true}, {"options", r->options, sizeof r->options, true},
        {"target_kind", r->kind, sizeof r->kind, false}, {"seed", r->seed, sizeof r->seed, false},
        {"model", r->model, sizeof r->model, false}, {"settings", r->settings, sizeof r->settings, false}};
    struct { const char *key; double *x; Range rg; } nums[] = {
        {"target", &r->target, R_TARGET}, {"params_original", &r->params_orig, R_COUNT},
        {"params", &r->params, R_COUNT}, {"macs_original", &r->macs_orig, R_COUNT}, {"macs", &r->macs, R_COUNT},
        {"accuracy_original", &r->acc_orig, R_ACCURACY}, {"accuracy_oneshot", &r->acc_oneshot, R_ACCURACY},
        {"accuracy_recalibrated", &r->acc_recal, R_ACCURACY}, {"accuracy_finetuned", &r->acc_final, R_ACCURACY},
        {"finetune_epochs", &r->finetune_epochs, R_EPOCHS}, {"best_epoch", &r->best_epoch, R_EPOCHS},
        {"latency_ms_original", &r->lat_orig, R_LATENCY}, {"latency_ms", &r->lat, R_LATENCY},
        {"score_seconds", &score_s, R_SECONDS}, {"finetune_seconds", &finetune_s, R_SECONDS},
        {"seconds", &r->seconds, R_SECONDS}};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (json_str(j, strs[i].key, strs[i].optional, strs[i].buf, strs[i].cap, path, err) < 0) return -1;
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        if (json_num(j, nums[i].key, nums[i].rg, nums[i].x, path, err) < 0) return -1;
    return json_speedup(j, r, path, err) < 0 ? -1 : json_crc(j, r, path, err);
}

// True if s is a seed as sweeps write it: a decimal integer below 2^64, without leading zeros.
static bool is_seed(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 20 || strspn(s, "0123456789") != n || (s[0] == '0' && n > 1)) return false;
    return n < 20 || strcmp(s, "18446744073709551615") <= 0;
}

// True if every byte of s is a letter, a digit or one of extra.
static bool has_only(const char *s, const char *extra) {
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr(extra, *s)) return false;
    return true;
}

// True if s has a control character (a line break among them).
static bool has_control(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return true;
    return false;
}

// Fails unless the strings of r, read from path, are as a sweep writes them (the tables print
// them as they are: a '|', a line break or a quote must not get there): a method name, a
// criterion, options of letters, digits, spaces and , . + -, a target kind, a seed, the id
// these make, a model path without control characters. Returns 0, or -1 naming path and key.
static int check_strings(const SweepResult *r, const char *path, HpErr *err) {
    if (!sweep_method_name_ok(r->method))
        return hp_fail(err, "%s: method is not a method name (1 to %d letters, digits and . _ + -, starting with a "
                            "letter or digit)", path, SWEEP_NAME - 1);
    if (r->criterion[0] && criterion_parse(r->criterion) == CRIT_COUNT)
        return hp_fail(err, "%s: criterion is not the name of a criterion", path);
    if (r->criterion[0] && criterion_parse(r->method) != CRIT_COUNT && strcmp(r->criterion, r->method) != 0)
        return hp_fail(err, "%s: criterion %s is not %s, the criterion its method is named after", path, r->criterion,
                       r->method);
    if (!has_only(r->options, " ,.+-"))
        return hp_fail(err, "%s: options has characters other than letters, digits, spaces and , . + -", path);
    bool kind = false;
    for (TargetKind k = TARGET_MACS; k <= TARGET_CHANNELS; k++) kind |= strcmp(r->kind, kind_word(k)) == 0;
    if (!kind) return hp_fail(err, "%s: target_kind is not flops, params or channels", path);
    if (!is_seed(r->seed))
        return hp_fail(err, "%s: seed is not a decimal integer below 2^64 (without leading zeros)", path);
    char t[32], id[SWEEP_ID + 64];
    fmt_fraction(t, sizeof t, r->target);
    snprintf(id, sizeof id, "%s-%s%s-s%s", r->method, r->kind, t, r->seed);
    if (strcmp(id, r->id) != 0)
        return hp_fail(err, "%s: id is not %s, the id of its method, target and seed", path, id);
    if (has_control(r->model)) return hp_fail(err, "%s: model has a control character", path);
    return 0;
}

// The speed-up of a result: as the run measured it (the median of its timing rounds' ratios), or in
// a result written before that was recorded, latency before pruning over latency after (both
// positive, checked).
static double speedup(const SweepResult *r) { return r->speedup > 0 ? r->speedup : r->lat_orig / r->lat; }

// Fails unless the numbers of r, read from path, agree: pruning removed MACs and parameters (it
// never adds any), the best epoch is one of the fine-tuning's, the speed-up is a positive
// finite number. Returns 0, or -1 naming path and the keys.
static int check_numbers(const SweepResult *r, const char *path, HpErr *err) {
    char a[32], b[32];
    struct { const char *key, *of; double x, max; } le[] = {
        {"macs", "macs_original", r->macs, r->macs_orig}, {"params", "params_original", r->params, r->params_orig},
        {"best_epoch", "finetune_epochs", r->best_epoch, r->finetune_epochs}};
    for (size_t i = 0; i < sizeof le / sizeof le[0]; i++) {
        if (le[i].x <= le[i].max) continue;
        fmt_value(a, sizeof a, le[i].x), fmt_value(b, sizeof b, le[i].max);
        return hp_fail(err, "%s: %s %s is above %s %s", path, le[i].key, a, le[i].of, b);
    }
    double s = speedup(r);
    if (isfinite(s) && s > 0) return 0;
    fmt_value(a, sizeof a, r->lat_orig), fmt_value(b, sizeof b, r->lat);
    return hp_fail(err, "%s: latency_ms_original %s / latency_ms %s is not a finite speed-up", path, a, b);
}

// Parses a result file into *r and checks every field (read_fields, check_strings,
// check_numbers). Returns 0, or -1 with err naming the file and the problem.
static int result_read(const char *path, SweepResult *r, HpErr *err) {
    size_t len;
    char *text = read_text(path, &len, err);
    if (!text) return -1;
    cJSON *j = parse_object(text, len, path, err);
    free(text);
    if (!j) return -1;
    memset(r, 0, sizeof *r);
    int rc = read_fields(j, r, path, err);
    cJSON_Delete(j);
    if (rc == 0) rc = check_strings(r, path, err);
    if (rc == 0) rc = check_numbers(r, path, err);
    if (rc == 0 && strlen(path) >= sizeof r->file) rc = hp_fail(err, "%s: path too long", path);
    if (rc == 0) snprintf(r->file, sizeof r->file, "%s", path);
    return rc;
}

// true if the ';'-separated list b has the item item[0..len).
static bool has_item(const char *b, const char *item, size_t len) {
    for (const char *p = b; *p;) {
        size_t n = strcspn(p, ";");
        if (n == len && strncmp(p, item, len) == 0) return true;
        p += n + (p[n] == ';');
    }
    return false;
}

// The items of a run's settings (run_settings) whose values are floats (TrainConfig's), written
// with %.9g.
static const char *const FLOAT_ITEMS[] = {"lr", "val_split", "weight_decay"};

// Writes v into buf in the fewest significant digits that read back to the same double (from
// %.15g to %.17g), or to the same float if as_float (from %.6g to %.9g).
static void fmt_shortest(char *buf, size_t cap, double v, bool as_float) {
    for (int digits = as_float ? 6 : 15; digits < (as_float ? 9 : 17); digits++) {
        snprintf(buf, cap, "%.*g", digits, v);
        double back = strtod(buf, NULL);
        if (as_float ? (float)back == (float)v : back == v) return;
    }
    snprintf(buf, cap, "%.*g", as_float ? 9 : 17, v);
}

// Writes the item p[0..n) of a result's settings into buf as a message shows it: a number as
// fmt_shortest writes it (a float for FLOAT_ITEMS), so "max_layer_frac=0.90000000000000002" (its
// %.17g, written so that it reads back exactly) reads "max_layer_frac=0.9", "lr=0.00999999978"
// "lr=0.01"; other items as they are.
static void readable_item(const char *p, size_t n, char *buf, size_t cap) {
    size_t key = strcspn(p, "=");
    char value[64];
    double v;
    snprintf(buf, cap, "%.*s", (int)n, p);
    if (key >= n || n - key - 1 >= sizeof value) return;
    snprintf(value, sizeof value, "%.*s", (int)(n - key - 1), p + key + 1);
    if (ini_number(value, &v) != 0) return;
    bool as_float = false;
    for (size_t i = 0; i < sizeof FLOAT_ITEMS / sizeof FLOAT_ITEMS[0]; i++)
        as_float |= strlen(FLOAT_ITEMS[i]) == key && strncmp(p, FLOAT_ITEMS[i], key) == 0;
    fmt_shortest(value, sizeof value, v, as_float);
    snprintf(buf, cap, "%.*s=%s", (int)key, p, value);
}

// Writes into buf the first ';'-separated item of a that b lacks (readable_item), or "nothing" if
// none (an item that only b has, such as a setting added since a was written).
static void first_difference(const char *a, const char *b, char *buf, size_t cap) {
    for (const char *p = a; *p;) {
        size_t n = strcspn(p, ";");
        if (!has_item(b, p, n)) {
            readable_item(p, n, buf, cap);
            return;
        }
        p += n + (p[n] == ';');
    }
    snprintf(buf, cap, "nothing");
}

int sweep_result_done(const char *path, const SweepConfig *c, const SweepRun *r, HpErr *err) {
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT) return 0;
    SweepResult res;
    if (result_read(path, &res, err) < 0) return -1;
    // both sides filtered alike: a path holding ";probes=" then reads the same in each
    char built[4 * SWEEP_PATH], settings[sizeof built], stored[sizeof res.settings];
    run_settings(c, r, built, sizeof built);
    settings_read_by(built, c, r->method, settings);
    settings_read_by(res.settings, c, r->method, stored);
    if (strcmp(res.id, r->id) != 0) return hp_fail(err, "%s: holds run '%s', not '%s'", path, res.id, r->id);
    char crc[9];
    snprintf(crc, sizeof crc, "%08x", (unsigned)c->model_crc);
    if (c->model_crc_known && res.crc[0] && strcmp(res.crc, crc) != 0)
        return hp_fail(err, "%s: made from another model: %s with CRC-32 %s, where this sweep's model %s has CRC-32 %s%s: "
                            "use another output directory or delete it", path, res.model, res.crc, c->model, crc,
                       strcmp(res.model, c->model) == 0 ? " (the file changed since)" : "");
    if (strcmp(stored, settings) != 0) {
        char was[256], now[256];
        first_difference(stored, settings, was, sizeof was);
        first_difference(settings, stored, now, sizeof now);
        return hp_fail(err, "%s: made with other settings (it has %s where this config has %s): use another output "
                            "directory or delete it", path, was, now);
    }
    return c->model_crc_known && !res.crc[0] ? SWEEP_DONE_UNCHECKED : 1;
}

// ---- collect ----

// Orders results by method, target kind, target, then seed (numerically).
static int result_cmp(const void *pa, const void *pb) {
    const SweepResult *a = pa, *b = pb;
    int c = strcmp(a->method, b->method);
    if (!c) c = strcmp(a->kind, b->kind);
    if (!c) c = (a->target > b->target) - (a->target < b->target);
    if (!c) c = (strlen(a->seed) > strlen(b->seed)) - (strlen(a->seed) < strlen(b->seed));
    if (!c) c = strcmp(a->seed, b->seed);
    return c;
}

// True for a finished result's file name: "<id>.json" (temporary files end otherwise).
static bool is_result_name(const char *name) {
    size_t n = strlen(name);
    return name[0] != '.' && n > 5 && strcmp(name + n - 5, ".json") == 0;
}

// Reads every DIR/runs/*.json into *out (sorted). Returns the count, or -1 with err set.
static int read_results(const char *dir, SweepResult **out, HpErr *err) {
    char runs[SWEEP_PATH * 2];
    if (snprintf(runs, sizeof runs, "%s/runs", dir) >= (int)sizeof runs) return hp_fail(err, "%s: path too long", dir);
    DIR *d = opendir(runs);
    if (!d) return hp_fail(err, "%s: cannot open: %s", runs, strerror(errno));
    int n = 0, cap = 16, rc = 0;
    SweepResult *r = hp_alloc((size_t)cap, sizeof *r, err);
    if (!r) {
        closedir(d);
        return -1;
    }
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (!is_result_name(e->d_name)) continue;
        if (n == cap) {
            SweepResult *t = hp_alloc((size_t)cap * 2, sizeof *r, err);
            if (!t) {
                rc = -1;
                break;
            }
            memcpy(t, r, (size_t)n * sizeof *r);
            free(r);
            r = t;
            cap *= 2;
        }
        char path[SWEEP_PATH * 3];
        snprintf(path, sizeof path, "%s/%s", runs, e->d_name);
        rc = result_read(path, &r[n++], err);
    }
    closedir(d);
    if (rc == 0 && n == 0) rc = hp_fail(err, "%s: no result files (*.json) to collect", runs);
    if (rc < 0) {
        free(r);
        return -1;
    }
    qsort(r, (size_t)n, sizeof *r, result_cmp);
    *out = r;
    return n;
}

const char *const SWEEP_CSV_HEADER[] = {
    "id", "method", "target_kind", "target", "seed", "params_original", "params", "macs_original", "macs",
    "macs_removed", "accuracy_original", "accuracy_oneshot", "accuracy_recalibrated", "accuracy_finetuned",
    "finetune_epochs", "best_epoch",
    "latency_ms", "speedup", "seconds"};
const int SWEEP_CSV_COLS = (int)(sizeof SWEEP_CSV_HEADER / sizeof SWEEP_CSV_HEADER[0]);

// Fraction of the original MACs a result removed.
static double macs_removed(const SweepResult *r) { return 1.0 - r->macs / r->macs_orig; }

// Bytes of a cell of results.csv: the longest a checked result gives is "%.3f" of the largest
// finite double (a latency or a speed-up: 309 digits, a point, 3 decimals); an id takes 127.
// (tests/test_csv_row.c builds this file with smaller cells, to see which one is named.)
#ifndef CELL
#define CELL 320
#endif

// Formats column k of a row of results.csv into c[k]. Returns 0, or -1 with err set if it would
// not fit (the checks on read rule that out).
__attribute__((format(printf, 5, 6))) static int put_cell(char (*c)[CELL], int k, const char *path, HpErr *err,
                                                          const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c[k], CELL, fmt, ap);
    va_end(ap);
    if (n >= 0 && n < CELL) return 0;
    return hp_fail(err, "%s: the %s cell is longer than %d characters", path, SWEEP_CSV_HEADER[k], CELL - 1);
}

// Formats the row of result x into c (SWEEP_CSV_COLS cells), in column order. Returns 0, or -1
// with err naming the first cell that does not fit.
static int csv_row(const SweepResult *x, char (*c)[CELL], const char *path, HpErr *err) {
    char t[32];
    fmt_fraction(t, sizeof t, x->target);
    const char *text[] = {x->id, x->method, x->kind, t, x->seed};
    enum { N_TEXT = sizeof text / sizeof text[0] };
    const struct {
        int decimals;
        double v;
    } num[] = {{0, x->params_orig}, {0, x->params},         {0, x->macs_orig},   {0, x->macs},
               {6, macs_removed(x)}, {6, x->acc_orig},      {6, x->acc_oneshot}, {6, x->acc_recal},
               {6, x->acc_final},   {0, x->finetune_epochs}, {0, x->best_epoch}, {3, x->lat},
               {3, speedup(x)},     {1, x->seconds}};
    _Static_assert(N_TEXT + sizeof num / sizeof num[0] == sizeof SWEEP_CSV_HEADER / sizeof SWEEP_CSV_HEADER[0],
                   "csv_row fills every column");
    for (int k = 0; k < N_TEXT; k++)
        if (put_cell(c, k, path, err, "%s", text[k]) < 0) return -1;
    for (int k = 0; k < (int)(sizeof num / sizeof num[0]); k++)
        if (put_cell(c, N_TEXT + k, path, err, "%.*f", num[k].decimals, num[k].v) < 0) return -1;
    return 0;
}

// Writes results.csv to path: one row per result.
static int write_csv(const char *path, const SweepResult *r, int n, HpErr *err) {
    enum { NC = 19 };
    _Static_assert(sizeof SWEEP_CSV_HEADER / sizeof SWEEP_CSV_HEADER[0] == NC, "csv_row fills every column");
    char **cells = hp_zalloc((size_t)n * NC, sizeof(char *), err);  // each cell its own copy
    int rc = cells ? 0 : hp_prefix(err, path);
    for (int i = 0; i < n && rc == 0; i++) {
        char c[NC][CELL];
        rc = csv_row(&r[i], c, path, err);
        for (int k = 0; k < NC && rc == 0; k++) {
            size_t len = strlen(c[k]) + 1;
            char *copy = hp_alloc(len, 1, err);
            if (!copy) rc = hp_prefix(err, path);
            else cells[(size_t)i * NC + k] = memcpy(copy, c[k], len);
        }
    }
    if (rc == 0) rc = table_write_csv(path, SWEEP_CSV_HEADER, NC, (const char *const *)cells, n, err);
    for (size_t k = 0; cells && k < (size_t)n * NC; k++) free(cells[k]);
    free(cells);
    return rc;
}

// The results of one method at one target (kind and value), averaged over seeds.
typedef struct {
    const SweepResult *first;  // its first result (method, kind, target, original figures)
    int seeds;
    double removed, oneshot, final, final_sd, params, macs;
} Point;

// Groups the sorted results by (method, kind, target) into pts (n entries at most); returns the count.
static int group_points(const SweepResult *r, int n, Point *pts) {
    int k = 0;
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && strcmp(r[j].method, r[i].method) == 0 && strcmp(r[j].kind, r[i].kind) == 0 &&
               r[j].target == r[i].target)
            j++;
        Point p = {.first = &r[i], .seeds = j - i};
        for (int s = i; s < j; s++) {
            p.removed += macs_removed(&r[s]) / p.seeds;
            p.oneshot += r[s].acc_oneshot / p.seeds;
            p.final += r[s].acc_final / p.seeds;
            p.params += r[s].params / p.seeds;
            p.macs += r[s].macs / p.seeds;
        }
        for (int s = i; s < j && p.seeds > 1; s++) p.final_sd += pow(r[s].acc_final - p.final, 2) / (p.seeds - 1);
        p.final_sd = sqrt(p.final_sd);
        pts[k++] = p;
        i = j;
    }
    return k;
}

// Base name of a path (the part after the last '/').
static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

// Appends the per-run table of results.md.
static void md_runs(StrBuf *b, const SweepResult *r, int n) {
    sb_printf(b, "| method | target | seed | params | MACs | MACs removed | one-shot | BN re-estimated | fine-tuned | "
                 "latency ms | speed-up | time |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        const SweepResult *x = &r[i];
        sb_printf(b, "| %s | %s %.0f%% | %s | %.0f (-%.1f%%) | %.3fM | %.1f%% | %.2f%% | %.2f%% | %.2f%% | %.2f | %.2fx | %.0fs"
                     " |\n",
                  x->method, x->kind, 100 * x->target, x->seed, x->params, 100 * (1 - x->params / x->params_orig),
                  x->macs / 1e6, 100 * macs_removed(x), 100 * x->acc_oneshot, 100 * x->acc_recal, 100 * x->acc_final, x->lat,
                  speedup(x), x->seconds);
    }
}

// Appends the table of means over seeds (when some target has more than one seed).
static void md_means(StrBuf *b, const Point *p, int np) {
    bool multi = false;
    for (int i = 0; i < np; i++) multi |= p[i].seeds > 1;
    if (!multi) return;
    sb_printf(b, "\nMeans over seeds:\n\n| method | target | seeds | params | MACs removed | one-shot | fine-tuned |\n"
                 "|---|---|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < np; i++)
        sb_printf(b, "| %s | %s %.0f%% | %d | %.0f | %.1f%% | %.2f%% | %.2f%% ± %.2f |\n", p[i].first->method,
                  p[i].first->kind, 100 * p[i].first->target, p[i].seeds, p[i].params, 100 * p[i].removed,
                  100 * p[i].oneshot, 100 * p[i].final, 100 * p[i].final_sd);
}

// Appends what each method that is not a bare criterion stands for ("`obs-pc`: obs, rank
// per-cost, 5 steps"), one line each, if there is one.
static void md_methods(StrBuf *b, const SweepResult *r, int n) {
    bool any = false;
    for (int i = 0; i < n; i++) {
        if (i > 0 && strcmp(r[i].method, r[i - 1].method) == 0) continue;  // sorted by method
        if (!r[i].criterion[0] || (!r[i].options[0] && strcmp(r[i].method, r[i].criterion) == 0)) continue;
        if (!any) sb_printf(b, "Methods:\n\n");
        any = true;
        sb_printf(b, "- `%s`: %s%s%s\n", r[i].method, r[i].criterion, r[i].options[0] ? ", " : "", r[i].options);
    }
    if (any) sb_printf(b, "\n");
}

// The pruning steps a result's settings record ("steps=5;"), or 0 if they do not.
static int settings_steps(const char *settings) {
    for (const char *p = settings; *p;) {
        if (strncmp(p, "steps=", 6) == 0) return atoi(p + 6);
        p += strcspn(p, ";");
        p += *p == ';';
    }
    return 0;
}

// Appends how many steps the runs took to reach their targets, when that is more than one: one
// count if every run shares it, else a pointer to the per-run column of the methods' options.
static void md_steps(StrBuf *b, const SweepResult *r, int n) {
    int steps = settings_steps(r[0].settings);
    bool same = true;
    for (int i = 1; i < n; i++) same &= settings_steps(r[i].settings) == steps;
    if (same && steps > 1)
        sb_printf(b, " Each run reached its target in %d steps, re-scoring the model between them (one-shot: after "
                     "the last step).", steps);
    else if (!same)
        sb_printf(b, " The runs took different numbers of pruning steps (the methods' options below say which).");
}

// Writes results.md to path: the base model, one row per run, means over seeds, the chart.
static int write_md(const char *path, const SweepResult *r, int n, const Point *p, int np, HpErr *err) {
    StrBuf b = {0};
    sb_printf(&b, "# hprune sweep: %s\n\n", base_name(r[0].model));
    sb_printf(&b, "%d run%s of `%s`: %.0f parameters, %.3fM MACs, test accuracy %.2f%% before pruning.\n", n,
              n > 1 ? "s" : "", r[0].model, r[0].params_orig, r[0].macs_orig / 1e6, 100 * r[0].acc_orig);
    if (r[0].finetune_epochs > 0)
        sb_printf(&b, "One-shot: right after pruning; BN re-estimated: then with batchnorm statistics re-estimated "
                      "(no weight changes; the same as one-shot without batchnorm); fine-tuned: after %.0f epoch%s of "
                      "fine-tuning (the best epoch on the validation split).",
                  r[0].finetune_epochs, r[0].finetune_epochs == 1 ? "" : "s");
    else
        sb_printf(&b, "One-shot: right after pruning; BN re-estimated: then with batchnorm statistics re-estimated (no "
                      "weight changes); no fine-tuning (the fine-tuned column repeats the re-estimated one).");
    sb_printf(&b, " Latency: median time of a forward pass of 64 images; time: the whole run.");
    md_steps(&b, r, n);
    sb_printf(&b, "\n\n");
    md_methods(&b, r, n);
    md_runs(&b, r, n);
    md_means(&b, p, np);
    sb_printf(&b, "\n![accuracy vs MACs removed](accuracy_vs_macs.png)\n");
    int rc = sb_status(&b, err) < 0 ? hp_prefix(err, path) : write_file_atomic(path, b.s, b.len, err);
    sb_free(&b);
    return rc;
}

// Writes the chart to png and svg: per method, mean accuracy over seeds against the fraction of
// MACs removed, starting from the unpruned model at 0%.
static int write_chart(const char *png, const char *svg, const SweepResult *r, const Point *p, int np, HpErr *err) {
    PlotSeries *s = hp_zalloc((size_t)np, sizeof *s, err);
    double *xy = s ? hp_alloc(2 * (size_t)(2 * np), sizeof(double), err) : NULL;
    if (!xy) {
        free(s);
        return hp_prefix(err, "accuracy_vs_macs chart");
    }
    int ns = 0, at = 0;
    bool finetuned = false;
    for (int i = 0; i < np;) {
        int j = i;
        while (j < np && strcmp(p[j].first->method, p[i].first->method) == 0) j++;
        double *x = xy + at, *y = xy + at + (j - i + 1);
        x[0] = 0, y[0] = 100 * p[i].first->acc_orig;
        int k = 1;
        for (int q = i; q < j; q++, k++) {  // insertion by MACs removed
            int t = k;
            while (t > 1 && x[t - 1] > 100 * p[q].removed) x[t] = x[t - 1], y[t] = y[t - 1], t--;
            x[t] = 100 * p[q].removed, y[t] = 100 * p[q].final;
            finetuned |= p[q].first->finetune_epochs > 0;
        }
        s[ns++] = (PlotSeries){p[i].first->method, x, y, (size_t)k};
        at += 2 * k;
        i = j;
    }
    char title[160];
    snprintf(title, sizeof title, "accuracy vs MACs removed: %.100s", base_name(r[0].model));
    const char *ylabel = finetuned ? "test accuracy after fine-tuning (%)" : "test accuracy, no fine-tuning (%)";
    PlotOpts po = {.markers = true};
    int rc = plot_lines(png, title, "MACs removed (%)", ylabel, s, ns, &po, err);
    if (rc == 0) rc = plot_svg_lines(svg, title, "MACs removed (%)", ylabel, s, ns, &po, err);
    free(xy), free(s);
    return rc;
}

// Writes what result r says of its base model into buf: "M (CRC-32 X, 61706 parameters,
// 416520 MACs, test accuracy 90.85%)".
static void describe_base(const SweepResult *r, char *buf, size_t cap) {
    snprintf(buf, cap, "%s (CRC-32 %s, %.0f parameters, %.0f MACs, test accuracy %.6g%%)", r->model,
             r->crc[0] ? r->crc : "not recorded", r->params_orig, r->macs_orig, 100 * r->acc_orig);
}

// Fails unless the n results read from runs (DIR/runs) were made from one base model: the same
// CRC-32 where two record one, the same parameters, MACs and test accuracy before pruning; the
// error names two files that differ and what each says of its model.
static int check_same_base(const char *runs, const SweepResult *r, int n, HpErr *err) {
    const SweepResult *with_crc = r[0].crc[0] ? &r[0] : NULL;  // the first result recording a CRC-32
    for (int i = 1; i < n; i++) {
        const SweepResult *a = NULL, *b = &r[i];
        if (b->params_orig != r[0].params_orig || b->macs_orig != r[0].macs_orig || b->acc_orig != r[0].acc_orig)
            a = &r[0];
        else if (b->crc[0] && with_crc && strcmp(with_crc->crc, b->crc) != 0)
            a = with_crc;
        if (!a) {
            if (!with_crc && b->crc[0]) with_crc = b;
            continue;
        }
        char da[SWEEP_PATH + 128], db[SWEEP_PATH + 128];
        describe_base(a, da, sizeof da);
        describe_base(b, db, sizeof db);
        return hp_fail(err, "%s: %s and %s come from different base models, %s and %s: collect the runs of one model "
                            "only (move the others to another directory)", runs, base_name(a->file),
                       base_name(b->file), da, db);
    }
    return 0;
}

// ---- collect's outputs, written together ----

// Writes collect's outputs in dir (results.csv, results.md, the chart's PNG and SVG) all or none
// (an AtomicSet): a failure leaves the earlier files as they were and no temporary file.
static int write_outputs(const char *dir, const SweepResult *r, int n, const Point *p, int np, HpErr *err) {
    static const char *const names[] = {"results.csv", "results.md", "accuracy_vs_macs.png", "accuracy_vs_macs.svg"};
    char target[4][SWEEP_PATH * 2];
    const char *tmp[4];
    AtomicSet set = {0};
    for (int i = 0; i < 4; i++) {
        int len = snprintf(target[i], sizeof target[i], "%s/%s", dir, names[i]);
        if (len < 0 || (size_t)len >= sizeof target[i]) {
            atomic_set_abort(&set);
            return hp_fail(err, "%s: path too long", dir);
        }
        if (!(tmp[i] = atomic_set_stage(&set, target[i], err))) {
            atomic_set_abort(&set);
            return -1;
        }
    }
    int rc = write_csv(tmp[0], r, n, err);
    if (rc == 0) rc = write_md(tmp[1], r, n, p, np, err);
    if (rc == 0) rc = write_chart(tmp[2], tmp[3], r, p, np, err);
    if (rc == 0) return atomic_set_commit(&set, err);
    atomic_set_name_targets(&set, err->msg, sizeof err->msg);
    atomic_set_abort(&set);
    return -1;
}

int sweep_collect(const char *dir, int *n_runs, HpErr *err) {
    SweepResult *r = NULL;
    int n = read_results(dir, &r, err);
    if (n < 0) return -1;
    char runs[SWEEP_PATH * 2];
    snprintf(runs, sizeof runs, "%s/runs", dir);
    Point *p = check_same_base(runs, r, n, err) == 0 ? hp_alloc((size_t)n, sizeof *p, err) : NULL;
    int rc = p ? write_outputs(dir, r, n, p, group_points(r, n, p), err) : -1;
    free(p), free(r);
    if (rc == 0) *n_runs = n;
    return rc;
}
