// plot.h: charts for reports: line charts (PNG and SVG) and heat maps (PNG), drawn on a small
// RGB raster with a built-in bitmap font and written atomically (temporary file, rename).
// Every function returns 0, or -1 with err naming the path and the problem; nothing is left on
// disk after a failure.
#ifndef HP_PLOT_H
#define HP_PLOT_H

#include <stdbool.h>
#include <stddef.h>

#include "../nn/err.h"

// One line of a line chart: n points (x[i], y[i]). Non-finite points break the line; a point
// with no finite neighbour is drawn as a dot.
typedef struct {
    const char *name;  // legend text (NULL: "series <i>"); a legend is drawn for 2+ series
    const double *x;
    const double *y;
    size_t n;  // at least 2
} PlotSeries;

// Options of a line chart; NULL or a zeroed struct gives the defaults.
typedef struct {
    int width, height;  // canvas size in pixels; 0: 900 x 600 (allowed 200..8000)
    bool log_y;         // logarithmic y axis (decades); values <= y_floor are drawn at y_floor
    double y_floor;     // log y only; 0: max(smallest positive y, largest y * 1e-10)
    double y_min, y_max;  // fixed y range when y_min < y_max (log y: both > 0); else automatic
    bool markers;       // a dot on every finite point (for lines of few points)
} PlotOpts;

// Writes a line chart as PNG to path: axes with 1-2-5 ticks (decades on a log axis), grid,
// one colour per series from a fixed palette, a legend placed where it hides the least data,
// title and axis labels (each may be NULL). Every series needs n >= 2 and a finite point.
int plot_lines(const char *path, const char *title, const char *xlabel, const char *ylabel,
               const PlotSeries *series, int n_series, const PlotOpts *opts, HpErr *err);

// The same chart as an SVG text file (one <polyline> per unbroken run of a series).
int plot_svg_lines(const char *path, const char *title, const char *xlabel, const char *ylabel,
                   const PlotSeries *series, int n_series, const PlotOpts *opts, HpErr *err);

// Writes a heat map as PNG to path: z[iy * nx + ix] is the value at
// x = x0 + ix (x1 - x0) / (nx - 1), y = y0 + iy (y1 - y0) / (ny - 1) (y0 at the bottom),
// interpolated bilinearly between samples, coloured by a viridis-like ramp, with thin contour
// lines at the colour bar's ticks and a colour bar with tick labels. nx, ny >= 2; non-finite
// z values are shown grey; at least one must be finite.
int plot_heatmap(const char *path, const char *title, const char *xlabel, const char *ylabel,
                 const double *z, size_t nx, size_t ny, double x0, double x1, double y0,
                 double y1, HpErr *err);

#endif
