// test_plot.c: PNG/SVG charts and the CSV writer: files are re-read (PNG with libpng) and
// checked for size, ink, axes and content; bad input and unwritable paths fail cleanly.
#include "tests/testutil.h"

#include <dirent.h>
#include <png.h>

#include "formats/csv.h"
#include "formats/plot.h"

// A decoded RGB image.
typedef struct {
    int w, h;
    unsigned char *px;  // w * h * 3
} Img;

// Reads path (any PNG) as 8-bit RGB with libpng's simplified API.
static void read_png(const char *path, Img *img) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    assert_true(png_image_begin_read_from_file(&im, path));
    im.format = PNG_FORMAT_RGB;
    img->w = (int)im.width;
    img->h = (int)im.height;
    img->px = malloc(PNG_IMAGE_SIZE(im));
    assert_non_null(img->px);
    assert_true(png_image_finish_read(&im, NULL, img->px, 0, NULL));
}

// Returns pixel (x, y) of img.
static const unsigned char *pix(const Img *img, int x, int y) {
    return img->px + 3 * ((size_t)y * img->w + x);
}

// True for a dark (axis or text) pixel.
static bool is_dark(const unsigned char *p) { return p[0] < 90 && p[1] < 90 && p[2] < 90; }

// Returns how many pixels differ from the white background.
static long count_ink(const Img *img) {
    long n = 0;
    for (int y = 0; y < img->h; y++)
        for (int x = 0; x < img->w; x++) {
            const unsigned char *p = pix(img, x, y);
            n += !(p[0] == 255 && p[1] == 255 && p[2] == 255);
        }
    return n;
}

// Returns how many pixels are strongly coloured (far from grey): data lines, heat map cells.
static long count_colour(const Img *img) {
    long n = 0;
    for (int y = 0; y < img->h; y++)
        for (int x = 0; x < img->w; x++) {
            const unsigned char *p = pix(img, x, y);
            int mx = p[0] > p[1] ? (p[0] > p[2] ? p[0] : p[2]) : (p[1] > p[2] ? p[1] : p[2]);
            int mn = p[0] < p[1] ? (p[0] < p[2] ? p[0] : p[2]) : (p[1] < p[2] ? p[1] : p[2]);
            n += mx - mn > 80;
        }
    return n;
}

// Checks that the image has a y axis (a column in its left third that is dark for at least
// half the height) and an x axis (a row in its lower half dark for at least half the width).
static void expect_axes(const Img *img) {
    bool col_found = false, row_found = false;
    for (int x = 0; x < img->w / 3 && !col_found; x++) {
        int n = 0;
        for (int y = 0; y < img->h; y++) n += is_dark(pix(img, x, y));
        col_found = n >= img->h / 2;
    }
    for (int y = img->h / 2; y < img->h && !row_found; y++) {
        int n = 0;
        for (int x = 0; x < img->w; x++) n += is_dark(pix(img, x, y));
        row_found = n >= img->w / 2;
    }
    assert_true(col_found);
    assert_true(row_found);
}

// Checks a written chart: its size, enough ink, axes and coloured data.
static void expect_chart(const char *path, int w, int h, long min_colour) {
    Img img;
    read_png(path, &img);
    assert_int_equal(img.w, w);
    assert_int_equal(img.h, h);
    long ink = count_ink(&img);
    assert_true(ink > (long)w * h / 100);  // not blank
    expect_axes(&img);
    assert_true(count_colour(&img) >= min_colour);
    free(img.px);
}

// Returns the number of entries of dir other than "." and "..", and of those named ".hprune-*" (temporary files).
static int count_entries(const char *dir, int *n_tmp) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    *n_tmp = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        n++;
        if (strncmp(e->d_name, ".hprune-", 8) == 0) (*n_tmp)++;
    }
    closedir(d);
    return n;
}

// Reads the whole text file path into a malloc'd string.
static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

#define NPTS 200

// Fills two loss-like curves and a spectral-density-like curve spanning many decades.
static void make_curves(double *x, double *a, double *b, double *ev, double *dens) {
    for (int i = 0; i < NPTS; i++) {
        x[i] = i * 0.1;
        a[i] = 2.3 * exp(-x[i] / 4) + 0.2;
        b[i] = 2.3 * exp(-x[i] / 6) + 0.3;
        ev[i] = -2 + i * 0.25;
        dens[i] = exp(-ev[i] * ev[i] / 0.5) + 1e-3 * exp(-(ev[i] - 30) * (ev[i] - 30) / 0.5);
    }
    dens[5] = 0;  // clamped to the floor on a log axis
}

static void test_line_charts_png(void **state) {
    (void)state;
    char dir[64], p1[128], p2[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(p1, sizeof p1, "%s/loss.png", dir);
    snprintf(p2, sizeof p2, "%s/density.png", dir);
    static double x[NPTS], a[NPTS], b[NPTS], ev[NPTS], dens[NPTS];
    make_curves(x, a, b, ev, dens);
    a[50] = NAN;  // a gap in the line
    PlotSeries two[2] = {{"train", x, a, NPTS}, {"test", x, b, NPTS}};
    HpErr err = {{0}};
    assert_int_equal(plot_lines(p1, "Loss", "epoch", "loss", two, 2, NULL, &err), 0);
    expect_chart(p1, 900, 600, 1500);
    PlotSeries one = {"density", ev, dens, NPTS};
    PlotOpts o = {.log_y = true, .y_floor = 1e-9, .width = 640, .height = 480};
    assert_int_equal(plot_lines(p2, "Spectral density", "eigenvalue", "density", &one, 1, &o,
                                &err),
                     0);
    expect_chart(p2, 640, 480, 500);
    int n_tmp, n = count_entries(dir, &n_tmp);
    assert_int_equal(n, 2);
    assert_int_equal(n_tmp, 0);
    tu_rmtree(dir);
}

static void test_heatmap_png(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/landscape.png", dir);
    enum { NX = 21, NY = 17 };
    double z[NX * NY];
    for (int j = 0; j < NY; j++)
        for (int i = 0; i < NX; i++) {
            double u = -1 + 2.0 * i / (NX - 1), v = -1 + 2.0 * j / (NY - 1);
            z[j * NX + i] = 0.5 + u * u + 3 * v * v;
        }
    z[3] = NAN;  // shown grey
    HpErr err = {{0}};
    assert_int_equal(
        plot_heatmap(path, "Loss landscape", "alpha", "beta", z, NX, NY, -1, 1, -1, 1, &err), 0);
    Img img;
    read_png(path, &img);
    assert_true(img.w >= 400 && img.h >= 400);
    free(img.px);
    expect_chart(path, img.w, img.h, (long)img.w * img.h / 5);  // mostly colour
    tu_rmtree(dir);
}

static void test_svg(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/sweep.svg", dir);
    static double x[NPTS], a[NPTS], b[NPTS], ev[NPTS], dens[NPTS];
    make_curves(x, a, b, ev, dens);
    PlotSeries two[2] = {{"HAP <trace>", x, a, NPTS}, {"magnitude", x, b, NPTS}};
    HpErr err = {{0}};
    assert_int_equal(plot_svg_lines(path, "Accuracy & sparsity", "sparsity", "accuracy", two, 2,
                                    NULL, &err),
                     0);
    char *s = read_text(path);
    assert_non_null(strstr(s, "<svg"));
    assert_non_null(strstr(s, "<polyline"));
    assert_non_null(strstr(s, "</svg>"));
    assert_non_null(strstr(s, "Accuracy &amp; sparsity"));  // text is escaped
    assert_non_null(strstr(s, "HAP &lt;trace&gt;"));
    free(s);
    PlotSeries one = {"density", ev, dens, NPTS};
    PlotOpts o = {.log_y = true};
    assert_int_equal(plot_svg_lines(path, NULL, NULL, NULL, &one, 1, &o, &err), 0);
    s = read_text(path);
    assert_non_null(strstr(s, "<polyline"));
    free(s);
    tu_rmtree(dir);
}

static void test_bad_input(void **state) {
    (void)state;
    char dir[64], path[128], missing[160];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/out.png", dir);
    snprintf(missing, sizeof missing, "%s/no/such/dir/out.png", dir);
    double x[3] = {0, 1, 2}, y[3] = {1, 2, 3}, nan3[3] = {NAN, NAN, NAN}, neg[3] = {0, -1, -2};
    HpErr err = {{0}};
    PlotSeries good = {"s", x, y, 3};
    // An unwritable path fails, names the path and leaves nothing.
    assert_int_equal(plot_lines(missing, "t", "x", "y", &good, 1, NULL, &err), -1);
    assert_non_null(strstr(err.msg, missing));
    assert_int_equal(plot_svg_lines(missing, "t", "x", "y", &good, 1, NULL, &err), -1);
    double z[4] = {1, 2, 3, 4};
    assert_int_equal(plot_heatmap(missing, "t", "x", "y", z, 2, 2, 0, 1, 0, 1, &err), -1);
    assert_non_null(strstr(err.msg, missing));
    // Bad data fails with a message.
    PlotSeries short_s = {"short", x, y, 1};
    assert_int_equal(plot_lines(path, NULL, NULL, NULL, &short_s, 1, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "short"));
    PlotSeries nan_s = {"nan", x, nan3, 3};
    assert_int_equal(plot_lines(path, NULL, NULL, NULL, &nan_s, 1, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "no finite points"));
    assert_int_equal(plot_lines(path, NULL, NULL, NULL, NULL, 0, NULL, &err), -1);
    PlotSeries neg_s = {"neg", x, neg, 3};
    PlotOpts log = {.log_y = true};
    assert_int_equal(plot_lines(path, NULL, NULL, NULL, &neg_s, 1, &log, &err), -1);
    PlotOpts tiny = {.width = 10, .height = 10};
    assert_int_equal(plot_lines(path, NULL, NULL, NULL, &good, 1, &tiny, &err), -1);
    assert_int_equal(plot_heatmap(path, NULL, NULL, NULL, z, 1, 4, 0, 1, 0, 1, &err), -1);
    assert_int_equal(plot_heatmap(path, NULL, NULL, NULL, z, 2, 2, 1, 1, 0, 1, &err), -1);
    double znan[4] = {NAN, NAN, NAN, NAN};
    assert_int_equal(plot_heatmap(path, NULL, NULL, NULL, znan, 2, 2, 0, 1, 0, 1, &err), -1);
    assert_non_null(strstr(err.msg, "no finite"));
    int n_tmp;
    assert_int_equal(count_entries(dir, &n_tmp), 0);  // nothing written
    // Constant data and a constant heat map get a padded range and are drawn.
    double c3[3] = {5, 5, 5};
    PlotSeries flat = {"flat", c3, c3, 3};
    assert_int_equal(plot_lines(path, "flat", NULL, NULL, &flat, 1, NULL, &err), 0);
    assert_int_equal(plot_lines(path, "flat", NULL, NULL, &flat, 1, &log, &err), 0);
    double zc[4] = {2, 2, 2, 2};
    assert_int_equal(plot_heatmap(path, NULL, NULL, NULL, zc, 2, 2, 0, 1, 0, 1, &err), 0);
    assert_int_equal(count_entries(dir, &n_tmp), 1);
    assert_int_equal(n_tmp, 0);
    tu_rmtree(dir);
}

static void test_csv_roundtrip(void **state) {
    (void)state;
    char dir[64], path[128], line[256];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/trace.csv", dir);
    const char *header[3] = {"epoch", "loss", "lr, final"};
    double rows[3 * 3] = {1, 2.302585093, 0.1, 2, 0.123456789012, 1e-5, 3, -4.5e-300, 0};
    HpErr err = {{0}};
    assert_int_equal(csv_write(path, header, 3, rows, 3, &err), 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "epoch,loss,\"lr, final\"\n");
    for (int r = 0; r < 3; r++) {
        assert_non_null(fgets(line, sizeof line, f));
        char *p = line;
        for (int c = 0; c < 3; c++) {
            char *end;
            double v = strtod(p, &end);
            assert_true(end != p);
            double want = rows[r * 3 + c];
            assert_true(fabs(v - want) <= 1e-8 * fabs(want));
            p = end + (*end == ',');
        }
        assert_string_equal(p, "\n");
    }
    assert_null(fgets(line, sizeof line, f));
    fclose(f);
    // Header-less and empty tables; bad arguments and unwritable paths fail.
    assert_int_equal(csv_write(path, NULL, 3, rows, 1, &err), 0);
    char *s = read_text(path);
    assert_string_equal(s, "1,2.30258509,0.1\n");
    free(s);
    assert_int_equal(csv_write(path, header, 3, NULL, 0, &err), 0);
    assert_int_equal(csv_write(path, header, 0, rows, 1, &err), -1);
    snprintf(line, sizeof line, "%s/missing/x.csv", dir);
    assert_int_equal(csv_write(line, header, 3, rows, 3, &err), -1);
    assert_non_null(strstr(err.msg, line));
    int n_tmp;
    assert_int_equal(count_entries(dir, &n_tmp), 1);
    assert_int_equal(n_tmp, 0);
    tu_rmtree(dir);
}

static void test_csv_labeled_quoting(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/layers.csv", dir);
    const char *header[3] = {"layer", "trace", "channels"};
    const char *labels[3] = {"conv1", "block1,conv2", "fc \"head\""};
    double rows[3 * 2] = {12.5, 6, 0.25, 16, 1e9, 120};
    HpErr err = {{0}};
    assert_int_equal(csv_write_labeled(path, header, 2, labels, rows, 3, &err), 0);
    char *s = read_text(path);
    assert_string_equal(s,
                        "layer,trace,channels\n"
                        "conv1,12.5,6\n"
                        "\"block1,conv2\",0.25,16\n"
                        "\"fc \"\"head\"\"\",1e+09,120\n");
    free(s);
    assert_int_equal(csv_write_labeled(path, header, 2, NULL, rows, 3, &err), -1);
    tu_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_charts_png), cmocka_unit_test(test_heatmap_png),
        cmocka_unit_test(test_svg),             cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_csv_roundtrip),   cmocka_unit_test(test_csv_labeled_quoting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
