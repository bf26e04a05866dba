// common.c: what every command shares: errors and exit codes, option parsing, timing, and
// loading models and datasets (exiting with the error on failure).
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../formats/ini_table.h"
#include "../hessian/hvp.h"
#include "cli.h"

// Writes prefix and the formatted message to stderr as one line: bytes below 0x20 and 0x7f
// (a newline or a terminal escape in a file name or a config value) are shown as \xNN.
// A live progress line that may be showing on a terminal is cleared first.
static void put_message(const char *prefix, const char *fmt, va_list ap) {
    char msg[8192];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (isatty(STDERR_FILENO)) fputs("\r\033[K", stderr);
    fputs(prefix, stderr);
    for (const unsigned char *c = (const unsigned char *)msg; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            fprintf(stderr, "\\x%02x", *c);
        else
            fputc(*c, stderr);
    fputc('\n', stderr);
}

// Prints "hprune: error: <msg>" and exits with status 1.
void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    put_message("hprune: error: ", fmt, ap);
    va_end(ap);
    exit(EXIT_RUNTIME);
}

// Prints "hprune: warning: <msg>" and goes on.
void warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    put_message("hprune: warning: ", fmt, ap);
    va_end(ap);
}

int set_threads(int n, int workers) {
    const int procs = omp_get_num_procs();  // the processors this process may run on
    n = hp_set_threads(n);
    if ((long)n * workers > procs) {
        char jobs[48] = "";
        if (workers > 1) snprintf(jobs, sizeof jobs, "%d jobs of ", workers);
        warn("%s%d thread%s on the %d processor%s this process may use: they take turns, and the work runs slower "
             "than with one thread per processor",
             jobs, n, plural(n), procs, plural(procs));
    }
    return n;
}

// Prints "hprune CMD: <msg>" and a pointer to the help, exits with status 2.
void usage_error(const char *cmd, const char *fmt, ...) {
    char prefix[96];
    snprintf(prefix, sizeof prefix, "hprune %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    put_message(prefix, fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try 'hprune %s --help'.\n", cmd);
    exit(EXIT_USAGE);
}

// Parses a plain decimal integer (ini_long's grammar) in [lo, hi] for option opt, or exits with a
// usage error.
long parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi) {
    long v;
    if (ini_long(s, &v) != 0 || v < lo || v > hi)
        usage_error(cmd, "%s: '%s' is not an integer in [%ld, %ld]", opt, s, lo, hi);
    return v;
}

// Returns value, the operand of output option opt, or exits with a usage error if it is "-": no
// command writes its files to standard output, and a file named "-" is surely not what was meant.
const char *output_option(const char *cmd, const char *opt, const char *value, const char *kind) {
    if (strcmp(value, "-") == 0)
        usage_error(cmd, "%s -: writing to standard output is not supported; name a %s", opt, kind);
    return value;
}

// The ending of path's file name from its last '.', or "" when it has none.
static const char *name_ending(const char *path) {
    const char *slash = strrchr(path, '/'), *dot = strrchr(slash ? slash + 1 : path, '.');
    return dot ? dot : "";
}

const char *model_output_option(const char *cmd, const char *opt, const char *value) {
    static const char *const NOT_A_MODEL[] = {".json", ".md", ".csv", ".png", ".svg", ".ini"};
    const char *end = name_ending(output_option(cmd, opt, value, "file"));
    for (size_t i = 0; i < sizeof NOT_A_MODEL / sizeof NOT_A_MODEL[0]; i++)
        if (strcmp(end, NOT_A_MODEL[i]) == 0)
            usage_error(cmd, "%s %s: the model is written as safetensors, and a name ending in %s is a report's, a "
                             "table's or a plot's (name it MODEL.safetensors)", opt, value, end);
    return value;
}

const char *png_output_option(const char *cmd, const char *opt, const char *value) {
    if (strcmp(name_ending(output_option(cmd, opt, value, "file")), ".png") != 0)
        usage_error(cmd, "%s %s: the name must end in .png (a PNG image; its CSV goes beside it)", opt, value);
    return value;
}

const char *option_form(char **argv, const char *short_name, const char *long_name) {
    // the value is the argument just consumed ("--output F"), or the end of it ("--output=F", "-oF")
    const char *arg = optarg == argv[optind - 1] ? argv[optind - 2] : argv[optind - 1];
    return strncmp(arg, "--", 2) == 0 ? long_name : short_name;
}

// Exits with a usage error naming the option getopt_long just rejected with '?'. A long option
// is the whole argument it consumed (argv[optind - 1]); a short one is optopt and may sit in a
// group such as -jZ, where argv[optind - 1] is some earlier argument.
void bad_option(const char *cmd, char **argv, const struct option *opts) {
    const char *arg = argv[optind - 1];
    size_t len = strcspn(arg, "=");  // "--name" of "--name=value"
    bool is_long = optopt == 0;      // unknown or ambiguous long option
    for (const struct option *o = opts; !is_long && o->name; o++)  // a known (abbreviated) one given a value
        is_long = o->val == optopt && len > 2 && strncmp(arg, "--", 2) == 0 && strncmp(arg + 2, o->name, len - 2) == 0;
    if (!is_long) usage_error(cmd, "unknown option '-%c'", optopt);
    if (optopt) usage_error(cmd, "option '%.*s' takes no value", (int)len, arg);
    usage_error(cmd, "unknown option '%s'", arg);
}

// Exits with a usage error if option c was given before (under any name of its code), else
// marks it in seen.
void option_once(const char *cmd, const char *shortopts, const struct option *opts, bool *seen, int c) {
    int first = -1;
    for (int i = 0; opts[i].name && first < 0; i++)
        if (opts[i].val == c) first = i;
    if (first < 0) return;  // ':' or '?': the caller reports it
    if (!seen[first]) {
        seen[first] = true;
        return;
    }
    char names[256] = "";
    size_t at = 0;
    if (c > 0 && c < 256 && c != ':' && strchr(shortopts, c))
        at += (size_t)snprintf(names, sizeof names, "-%c", c);
    for (int i = first; opts[i].name && at < sizeof names; i++)
        if (opts[i].val == c)
            at += (size_t)snprintf(names + at, sizeof names - at, "%s--%s", at ? "/" : "", opts[i].name);
    usage_error(cmd, "%s given twice", names);
}

// "s" unless n is 1.
const char *plural(long n) { return n == 1 ? "" : "s"; }

// Seconds on a monotonic clock.
double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Formats a duration as "1h02m", "3m05s" or "12s".
const char *fmt_duration(double s, char *buf, size_t cap) {
    long t = s < 0 || !isfinite(s) ? 0 : (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60)
        snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, cap, "%lds", t);
    return buf;
}


const char *fmt_bytes(double bytes, char *buf, size_t cap) {
    if (bytes >= 1e12)
        snprintf(buf, cap, "%.1f TB", bytes / 1e12);
    else if (bytes >= 1e9)
        snprintf(buf, cap, "%.1f GB", bytes / 1e9);
    else
        snprintf(buf, cap, "%.0f MB", bytes / 1e6);
    return buf;
}

// Copies a string member of a JSON object text into buf (cap bytes) and returns buf, or NULL
// if there is none or it does not fit. (A buffer, not malloc: die() may exit while it is in use.)
const char *json_get_string(const char *json, const char *key, char *buf, size_t cap) {
    if (!json) return NULL;
    cJSON *root = cJSON_Parse(json);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    bool fits = cJSON_IsString(v) && strlen(v->valuestring) < cap;
    if (fits) memcpy(buf, v->valuestring, strlen(v->valuestring) + 1);
    cJSON_Delete(root);
    return fits ? buf : NULL;
}

// Loads a model file or exits with its error.
void load_model_or_die(Model *m, const char *path) {
    HpErr err;
    if (model_load(m, path, NULL, NULL, &err) < 0) die("%s", err.msg);
}

// Loads the named dataset from dir or exits with its error.
void load_dataset_or_die(const char *name, const char *dir, Dataset *train, Dataset *test) {
    HpErr err;
    if (dataset_load(name, dir, train, test, &err) < 0) die("%s", err.msg);
}

// Parses a plain decimal number in [lo, hi] for option opt, or exits with a usage error.
double parse_double(const char *cmd, const char *opt, const char *s, double lo, double hi) {
    double v;
    if (ini_number(s, &v) != 0 || v < lo || v > hi)
        usage_error(cmd, "%s: '%s' is not a number in [%g, %g]", opt, s, lo, hi);
    return v;
}

// Parses a number in (0, 1) for option opt, or exits with a usage error.
double parse_fraction(const char *cmd, const char *opt, const char *s) {
    double v;
    if (ini_number(s, &v) != 0 || !(v > 0 && v < 1))
        usage_error(cmd, "%s: '%s' is not a number in (0, 1): a fraction, e.g. 0.5 for 50%%", opt, s);
    return v;
}

void progress_init(Progress *p, const char *label) {
    memset(p, 0, sizeof *p);
    p->tty = isatty(STDERR_FILENO);
    p->label = label;
    p->clock = now_s;
    p->out = stderr;
}

// Writes "rate/s  ETA d" of a series into buf (empty before the series has a measured rate);
// against a cap, the ETA is a bound: "ETA <= d".
static void progress_rate(const Progress *p, long done, long total, double t, char *buf, size_t cap) {
    double el = t - p->t0;
    buf[0] = '\0';
    if (done <= p->done0 || el <= 0) return;
    double rate = (double)(done - p->done0) / el;
    if (total <= 0) {
        snprintf(buf, cap, "  %.1f/s", rate);
        return;
    }
    char eta[32];
    fmt_duration((double)(total - done) / rate, eta, sizeof eta);
    snprintf(buf, cap, "  %.1f/s  ETA %s%s", rate, p->capped ? "<= " : "", eta);
}

// Starts a new series at time t when done or unit says the update is not the current one's.
static void progress_series(Progress *p, long done, const char *unit, double t) {
    if (p->started && done >= p->prev && strcmp(unit, p->unit) == 0) return;
    p->started = true, p->t0 = t, p->done0 = done, p->last = 0, p->printed = -1;
    snprintf(p->unit, sizeof p->unit, "%s", unit);
}

// Whether a line is due at time t for done of total: on a terminal every 0.2 s and at the total;
// in a log when done has entered another tenth of the total since the last line shown (the
// reports of a parallel computation skip counts) and 2 s have passed, and at the total; every
// 30 s without a total.
static bool progress_due(const Progress *p, long done, long total, double t) {
    bool last = total > 0 && done >= total;
    if (p->tty) return t - p->last >= 0.2 || last;
    if (total <= 0) return t - p->last >= 30.0;
    long step = (total + 9) / 10;
    long tenth = done / step, shown = p->printed < 0 ? 0 : p->printed / step;
    return (tenth > shown && t - p->last >= 2.0) || last;
}

void progress_update(Progress *p, long done, long total, const char *unit) {
    double t = p->clock();
    progress_series(p, done, unit, t);
    p->prev = done;
    if (done == p->printed || !progress_due(p, done, total, t)) return;
    p->last = t;
    p->printed = done;
    char rate[64];
    progress_rate(p, done, total, t, rate, sizeof rate);
    const char *cr = p->tty ? "\r\033[K" : "", *nl = p->tty ? "" : "\n";
    if (total <= 0)
        fprintf(p->out, "%s%s: %ld %s%s%s", cr, p->label, done, unit, rate, nl);
    else if (p->capped)
        fprintf(p->out, "%s%s: %ld of at most %ld %s%s%s", cr, p->label, done, total, unit, rate, nl);
    else
        fprintf(p->out, "%s%s: %ld/%ld %s%s%s", cr, p->label, done, total, unit, rate, nl);
    p->shown = true;
    fflush(p->out);
}

void progress_hook(long done, long total, const char *unit, void *user) { progress_update(user, done, total, unit); }

void progress_done(Progress *p) {
    if (p->tty && p->shown) fputs("\r\033[K", p->out);
    p->shown = false;
    p->started = false;
}

void check_output_path(const char *path) {
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    char dir[1024];
    struct stat st;
    if (!*path) die("an output path is empty");
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) die("%s: cannot write: it is a directory", path);
    if (!*base) die("%s: cannot write: the path ends with '/'", path);
    if (strlen(base) > NAME_MAX) die("%s: cannot write: the file name is longer than %d bytes", path, NAME_MAX);
    if (slash) {
        if ((size_t)(slash - path) >= sizeof dir) die("%s: path too long", path);
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
        if (stat(dir, &st) != 0) die("%s: cannot write: directory %s: %s", path, dir, strerror(errno));
        if (!S_ISDIR(st.st_mode)) die("%s: cannot write: %s is not a directory", path, dir);
    }
    // creating a file is the test that also catches read-only file systems and /proc
    HpErr err;
    char *probe;
    if (atomic_reserve(path, &probe, &err) < 0) die("%s", err.msg);
    unlink(probe);
    free(probe);
}

void check_output_dir(const char *dir) {
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) die("%s: not a directory", dir);
        return;
    }
    if (errno != ENOENT) die("%s: cannot use as the output directory: %s", dir, strerror(errno));
    char bare[4096];  // without trailing slashes: the name the directory will have
    if (strlen(dir) >= sizeof bare) die("%s: path too long", dir);
    snprintf(bare, sizeof bare, "%s", dir);
    for (size_t n = strlen(bare); n > 1 && bare[n - 1] == '/'; n--) bare[n - 1] = '\0';
    check_output_path(bare);
}

// True when a and b name the same file: the same text, the same existing file, or the same
// name in the same directory.
static bool same_file(const char *a, const char *b) {
    if (strcmp(a, b) == 0) return true;
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    const char *ba = strrchr(a, '/'), *bb = strrchr(b, '/');
    if (strcmp(ba ? ba + 1 : a, bb ? bb + 1 : b) != 0) return false;
    char da[1024], db[1024];
    snprintf(da, sizeof da, "%.*s", ba ? (ba == a ? 1 : (int)(ba - a)) : 1, ba ? a : ".");
    snprintf(db, sizeof db, "%.*s", bb ? (bb == b ? 1 : (int)(bb - b)) : 1, bb ? b : ".");
    return stat(da, &sa) == 0 && stat(db, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

void check_outputs(const char *cmd, const char *const *paths, const char *const *labels, int n) {
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n && paths[i]; j++)
            if (paths[j] && same_file(paths[i], paths[j]))
                usage_error(cmd, "%s and %s would both write %s", labels[i], labels[j], paths[j]);
    for (int i = 0; i < n; i++)
        if (paths[i]) check_output_path(paths[i]);
}

void check_spares_inputs(const char *cmd, const char *const *paths, const char *const *labels, int n,
                         const char *const *inputs, const char *const *what, int n_in) {
    for (int k = 0; k < n_in; k++)
        for (int i = 0; i < n && inputs[k]; i++)
            if (paths[i] && same_file(paths[i], inputs[k]))
                usage_error(cmd, "%s would overwrite %s %s: write it elsewhere", labels[i], what[k], inputs[k]);
}

// Removes the staged files (those not renamed into place) and the directory made for them.
static void outputs_remove(Outputs *o) {
    atomic_set_abort(&o->set);
    if (o->made_dir) rmdir(o->made_dir);
}

// While files are staged, a reader of standard output that goes away must not kill the process
// (SIGPIPE) before it removes them: writes to it fail instead (EPIPE), and outputs_finish or
// check_stdout reports it. The default comes back once they are committed or removed.
static void outputs_guard(Outputs *o) {
    if (o->guarded) return;
    o->saved_sigpipe = signal(SIGPIPE, SIG_IGN);
    o->guarded = true;
}

static void outputs_unguard(Outputs *o) {
    if (!o->guarded) return;
    signal(SIGPIPE, o->saved_sigpipe);
    o->guarded = false;
}

const char *outputs_stage(Outputs *o, const char *target) {
    HpErr err;
    outputs_guard(o);
    const char *tmp = atomic_set_stage(&o->set, target, &err);
    if (!tmp) outputs_fail(o, err.msg);
    return tmp;
}

void outputs_fail(Outputs *o, const char *msg) {
    char out[8192];
    snprintf(out, sizeof out, "%s", msg);
    atomic_set_name_targets(&o->set, out, sizeof out);  // a writer's error names the temporary file
    outputs_remove(o);
    die("%s", out);
}

void *outputs_alloc(Outputs *o, size_t count, size_t size, bool zero) {
    HpErr err;
    void *p = zero ? hp_zalloc(count, size, &err) : hp_alloc(count, size, &err);
    if (!p) outputs_fail(o, err.msg);
    return p;
}

char *json_text(const cJSON *j, bool formatted, Outputs *o) {
    char *text = formatted ? cJSON_Print(j) : cJSON_PrintUnformatted(j);
    if (text) return text;
    if (o) outputs_fail(o, "out of memory: cannot format the JSON text");
    die("out of memory: cannot format the JSON text");
}

void outputs_commit(Outputs *o) {
    HpErr err;
    if (atomic_set_commit(&o->set, &err) < 0) {
        if (o->made_dir) rmdir(o->made_dir);
        die("%s", err.msg);
    }
    outputs_unguard(o);
}

// Flushes standard output; false, with the error in msg (cap bytes), if it could not be written.
static bool stdout_written(char *msg, size_t cap) {
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout)) return true;
    snprintf(msg, cap, "standard output: cannot write: %s", strerror(errno ? errno : EIO));
    return false;
}

void outputs_finish(Outputs *o) {
    char msg[128];
    if (!stdout_written(msg, sizeof msg)) outputs_fail(o, msg);
    outputs_commit(o);
}

// The limit in bytes a cgroup file holds ("max" or unreadable: none, 0).
static double cgroup_limit(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char buf[64] = "";
    bool got = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    char *end;
    double v = got ? strtod(buf, &end) : 0;
    return got && end != buf && v > 0 ? v : 0;
}

// The smallest memory limit of the cgroup directories from root + path up to root (each one's
// file), or 0: a limit set on a parent applies to its children.
static double limit_up_tree(const char *root, const char *path, const char *file) {
    char dir[4096];
    if ((size_t)snprintf(dir, sizeof dir, "%s%s", root, strcmp(path, "/") == 0 ? "" : path) >= sizeof dir) return 0;
    size_t root_len = strlen(root);
    double best = 0;
    for (;;) {
        char at[4200];
        snprintf(at, sizeof at, "%s/%s", dir, file);
        double v = cgroup_limit(at);
        if (v > 0 && (best == 0 || v < best)) best = v;
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < root_len) break;
        *slash = '\0';
    }
    return best;
}

// The smallest memory limit of this process's cgroups, v2 (the "0::PATH" line of
// /proc/self/cgroup: memory.max) or v1 (the memory controller's line: memory.limit_in_bytes),
// or 0 when none is set.
static double own_cgroup_limit(void) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return 0;
    char line[4096];
    double best = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c1 = *c2 = '\0';
        const char *controllers = c1 + 1, *path = c2 + 1;
        double v = 0;
        if (strcmp(line, "0") == 0 && !*controllers) {
            v = limit_up_tree("/sys/fs/cgroup", path, "memory.max");
        } else {
            char list[256];
            snprintf(list, sizeof list, ",%s,", controllers);
            if (strstr(list, ",memory,")) v = limit_up_tree("/sys/fs/cgroup/memory", path, "memory.limit_in_bytes");
        }
        if (v > 0 && (best == 0 || v < best)) best = v;
    }
    fclose(f);
    return best;
}

double memory_available(MemSource *source) {
    MemSource from = MEM_MACHINE;
    double have = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    double limit = own_cgroup_limit();
    if (have <= 0) have = 0, from = MEM_UNKNOWN;
    if (limit > 0 && (have <= 0 || limit < have)) have = limit, from = MEM_CGROUP;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (have <= 0 || (double)rl.rlim_cur < have))
        have = (double)rl.rlim_cur, from = MEM_ULIMIT;
    if (source) *source = from;
    return have;
}

double memory_limit(char *desc, size_t cap) {
    MemSource from;
    char have_s[32];
    double have = memory_available(&from);
    fmt_bytes(have, have_s, sizeof have_s);
    switch (from) {
    case MEM_MACHINE: snprintf(desc, cap, "80%% of the machine's %s", have_s); break;
    case MEM_CGROUP: snprintf(desc, cap, "80%% of the %s memory limit of its cgroup", have_s); break;
    case MEM_ULIMIT: snprintf(desc, cap, "80%% of the %s address-space limit, ulimit -v", have_s); break;
    case MEM_UNKNOWN: snprintf(desc, cap, "the machine's memory is unknown"); break;
    }
    return 0.8 * have;
}

void check_memory_fits(const char *subject, const char *what, double need, const char *advice) {
    char desc[96], need_s[32], limit_s[32];
    double limit = memory_limit(desc, sizeof desc);
    if (limit <= 0 || need <= limit) return;
    die("%s: %s about %s of memory, over the limit of %s (%s)%s%s", subject, what,
        fmt_bytes(need, need_s, sizeof need_s), fmt_bytes(limit, limit_s, sizeof limit_s), desc, advice ? ": " : "",
        advice ? advice : "");
}

// Writes into buf (cap bytes) ", in each of J jobs at once," when the memory limit is shared by
// the J = jobs > 1 processes running at once, else "", and returns how many share it: all of
// them, unless the limit is each process's own (ulimit -v), then 1.
static int jobs_note(int jobs, char *buf, size_t cap) {
    MemSource from;
    memory_available(&from);
    int sharers = from == MEM_ULIMIT || jobs < 1 ? 1 : jobs;
    if (sharers > 1)
        snprintf(buf, cap, ", in each of %d jobs at once,", sharers);
    else
        buf[0] = 0;
    return sharers;
}

void check_calibration_memory(const char *path, const Model *m, int samples, int batch, int jobs,
                              const char *advice) {
    char what[160], note[48];
    int sharers = jobs_note(jobs, note, sizeof note), run = curv_batch(samples, batch);
    snprintf(what, sizeof what, "the curvature passes over %d training images in batches of %d%s need", samples, run,
             note);
    check_memory_fits(path, what, sharers * (2.0 * (double)model_bytes(m) + (double)curv_bytes(m, samples, batch, 0)),
                      advice);
}

void check_finetune_memory(const char *subject, const Model *m, int batch, int jobs, const char *advice) {
    char what[128], note[48];
    int sharers = jobs_note(jobs, note, sizeof note);
    snprintf(what, sizeof what, "fine-tuning in batches of %d%s needs", batch, note);
    check_memory_fits(subject, what, sharers * (4.0 * (double)model_bytes(m) + (double)train_bytes(m, batch, 0, 0)),
                      advice);
}

void check_fisher_images(const char *subject, const char *grads, const char *batch, const FisherOpts *fo,
                         int n_train) {
    HpErr err;
    if (fisher_check_images(fo, n_train, grads, batch, &err) < 0) die("%s: %s", subject, err.msg);
}

void check_stdout(void) {
    char msg[128];
    if (!stdout_written(msg, sizeof msg)) die("%s", msg);
}

DatasetPick dataset_pick(const Model *m, DatasetChoice *c) {
    const char *prov_name = json_get_string(m->provenance, "dataset", c->prov_name, sizeof c->prov_name);
    const char *prov_dir = json_get_string(m->provenance, "data_dir", c->prov_dir, sizeof c->prov_dir);
    c->has_prov_name = prov_name != NULL;
    c->has_prov_dir = prov_dir != NULL;
    bool named = c->name != NULL;  // the user chose the dataset
    if (!c->name && prov_name && !dataset_known(prov_name)) return PICK_UNKNOWN_PROVENANCE;
    bool same = !c->name || (prov_name && strcmp(c->name, prov_name) == 0);
    if (!c->name) c->name = prov_name ? prov_name : "fashion-mnist";
    if (c->dir) return PICK_OK;
    if (same && prov_dir)
        c->dir = prov_dir;
    else if (strcmp(c->name, "fashion-mnist") == 0)
        c->dir = DEFAULT_DATA_DIR;
    else  // the provenance's directory holds another dataset (MNIST and Fashion-MNIST files share
          // names), or it names none for its own
        return named ? PICK_NEEDS_DIR : PICK_PROVENANCE_NO_DIR;
    return PICK_OK;
}

const char *trained_on(const DatasetChoice *c, char *buf, size_t cap) {
    snprintf(buf, cap, "%s%s%s", c->has_prov_name ? c->prov_name : "an unrecorded dataset",
             c->has_prov_dir ? " in " : "", c->has_prov_dir ? c->prov_dir : "");
    return buf;
}

void model_dataset(const char *cmd, const Model *m, const char *path, DatasetChoice *c) {
    char on[8300];
    switch (dataset_pick(m, c)) {
    case PICK_OK: return;
    case PICK_UNKNOWN_PROVENANCE:
        die("%s: its provenance names dataset '%s', which hprune does not know (--dataset chooses another)", path,
            c->prov_name);
    case PICK_NEEDS_DIR:
        usage_error(cmd, "%s: --dataset %s: give its directory with --data DIR (the model was trained on %s)", path,
                    c->name, trained_on(c, on, sizeof on));
    case PICK_PROVENANCE_NO_DIR:
        die("%s: its provenance names dataset %s but no directory: give it with --data DIR", path, c->name);
    }
}

void load_model_dataset_or_die(const char *cmd, const Model *m, const char *path, const char *name, const char *dir,
                               Dataset *train, Dataset *test, char *used_name, size_t cap) {
    DatasetChoice c = {.name = name, .dir = dir};
    model_dataset(cmd, m, path, &c);
    if (used_name) snprintf(used_name, cap, "%s", c.name);
    load_dataset_or_die(c.name, c.dir, train, test);
    if (m->input.c != test->c || m->input.h != test->h || m->input.w != test->w || m->n_classes < test->n_classes)
        die("%s: model takes %dx%dx%d inputs and %d classes, %s in %s has %dx%dx%d and %d", path, m->input.c,
            m->input.h, m->input.w, m->n_classes, c.name, c.dir, test->c, test->h, test->w, test->n_classes);
}

void train_progress_print(const TrainProgress *p, void *user) {
    TrainUi *ui = user;
    char eta[32];
    if (!p->epoch_done) {
        double t = now_s();
        if (!ui->tty || (t - ui->last_print < 0.25 && p->step != p->steps)) return;
        ui->last_print = t;
        fprintf(stderr, "\r\033[Kepoch %d/%d  step %d/%d  loss %.4f  acc %.2f%%  %.0f img/s  ETA %s", p->epoch + 1,
                p->epochs, p->step, p->steps, p->loss, 100.0 * p->acc, p->images_per_s,
                fmt_duration(p->eta_s, eta, sizeof eta));
        fflush(stderr);
        return;
    }
    char val[48] = "";
    if (p->val_acc >= 0) snprintf(val, sizeof val, "  val-acc %.2f%%", 100.0 * p->val_acc);
    const char *tag = !ui->tty && ui->prefix ? ui->prefix : "";  // a log's lines name the run
    fprintf(stderr, "%s%s%sepoch %d/%d  loss %.4f  train-acc %.2f%%%s  test-acc %.2f%%  test-loss %.4f  %.0f img/s  %.1fs  ETA %s\n",
            ui->tty ? "\r\033[K" : "", tag, *tag ? ": " : "", p->epoch + 1, p->epochs, p->loss, 100.0 * p->acc, val,
            100.0 * p->test_acc, p->test_loss, p->images_per_s, p->epoch_s, fmt_duration(p->eta_s, eta, sizeof eta));
    ui->last_test_acc = p->test_acc;
    ui->last_test_loss = p->test_loss;
    ui->last_val_acc = p->val_acc;
    ui->epochs_done = p->epoch + 1;
}
