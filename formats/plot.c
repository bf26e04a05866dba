// plot.c: line charts (PNG, SVG) and heat maps (PNG). A chart is laid out once (data ranges,
// 1-2-5 ticks, margins measured with the built-in font) and then rendered either onto an RGB
// raster (anti-aliased lines, filled rectangles, a bitmap font drawn at 2x) that libpng
// encodes, or as SVG text. All output goes through atomic_open/atomic_commit.
#include "plot.h"

#include <math.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats.h"

#define DEFAULT_W 900
#define DEFAULT_H 600
#define HEAT_W 860
#define HEAT_H 640
#define MIN_DIM 200
#define MAX_DIM 8000

#define FONT_W 5    // glyph columns
#define FONT_H 9    // glyph rows: 7 above the baseline and 2 for descenders
#define FONT_CAP 7  // rows of a capital letter or digit
#define TEXT_SCALE 2
#define TITLE_SCALE 3
#define CHAR_ADV ((FONT_W + 1) * TEXT_SCALE)  // horizontal advance of one character
#define CAP_H (FONT_CAP * TEXT_SCALE)         // height of a capital letter
#define LINE_H (FONT_H * TEXT_SCALE)          // height of a text line with descenders

#define TICK_LEN 6
#define MAX_TICKS 64
#define MAX_MINOR 256
#define LINE_WIDTH 2.5
#define PAD 12
#define YLABEL_GAP 16  // between the rotated y label and the y tick labels


// ---------------------------------------------------------------------------------------
// Colours

typedef struct {
    uint8_t r, g, b;
} Rgb;

static const Rgb WHITE = {255, 255, 255};
static const Rgb INK = {25, 25, 25};           // text
static const Rgb FRAME_INK = {45, 45, 45};     // axes frame and ticks
static const Rgb GRID = {222, 222, 222};       // major grid lines
static const Rgb GRID_MINOR = {241, 241, 241}; // minor grid lines (log axes)
static const Rgb LEGEND_EDGE = {170, 170, 170};
static const Rgb MISSING = {160, 160, 160};    // non-finite heat map cells

// Line colours: mutually distinct and dark enough to read on white.
static const Rgb PALETTE[] = {
    {0, 94, 184},   {214, 64, 36},  {0, 150, 90},  {232, 145, 0},  {128, 70, 178},
    {0, 168, 190},  {150, 96, 48},  {210, 70, 160}, {90, 90, 90},  {150, 170, 0},
};
#define N_PALETTE ((int)(sizeof PALETTE / sizeof PALETTE[0]))

// Heat map ramp stops (dark violet, blue, teal, green, yellow-green, yellow), evenly spaced.
static const Rgb RAMP[] = {
    {70, 8, 92}, {62, 78, 138}, {38, 130, 142}, {52, 180, 120}, {140, 212, 70}, {250, 230, 40},
};
#define N_RAMP ((int)(sizeof RAMP / sizeof RAMP[0]))

// Returns the ramp colour at t in [0, 1] (clamped), interpolated linearly between stops.
static Rgb ramp_colour(double t) {
    if (!(t > 0)) t = 0;
    if (t > 1) t = 1;
    double s = t * (N_RAMP - 1);
    int i = (int)s;
    if (i >= N_RAMP - 1) i = N_RAMP - 2;
    double f = s - i;
    Rgb a = RAMP[i], b = RAMP[i + 1];
    Rgb out = {(uint8_t)lround(a.r + f * (b.r - a.r)), (uint8_t)lround(a.g + f * (b.g - a.g)),
               (uint8_t)lround(a.b + f * (b.b - a.b))};
    return out;
}

// ---------------------------------------------------------------------------------------
// Canvas: an RGB raster plus a coverage mask used to draw one anti-aliased polyline at a time

typedef struct {
    int w, h;
    uint8_t *px;  // w * h * 3 bytes, rows top to bottom
    float *cov;   // w * h stroke coverage in [0, 1] of the polyline being drawn
} Canvas;

// Pixel rectangle [x0, x1) x [y0, y1).
typedef struct {
    int x0, y0, x1, y1;
} IBox;

// Allocates a w x h canvas filled with bg; -1 (nothing allocated) if out of memory.
static int canvas_init(Canvas *c, int w, int h, Rgb bg, HpErr *err) {
    size_t n = (size_t)w * (size_t)h;
    c->w = w;
    c->h = h;
    c->px = hp_alloc(n, 3, err);
    c->cov = c->px ? hp_zalloc(n, sizeof(float), err) : NULL;
    if (!c->cov) {
        free(c->px);
        c->px = NULL;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        c->px[3 * i] = bg.r;
        c->px[3 * i + 1] = bg.g;
        c->px[3 * i + 2] = bg.b;
    }
    return 0;
}

// Frees the canvas buffers.
static void canvas_free(Canvas *c) {
    free(c->px);
    free(c->cov);
    c->px = NULL;
    c->cov = NULL;
}

// Blends col over pixel (x, y) with opacity a in [0, 1]; pixels off the canvas are ignored.
static void blend(Canvas *c, int x, int y, Rgb col, double a) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h || a <= 0) return;
    if (a > 1) a = 1;
    uint8_t *p = c->px + 3 * ((size_t)y * (size_t)c->w + (size_t)x);
    p[0] = (uint8_t)lround(p[0] + a * (col.r - p[0]));
    p[1] = (uint8_t)lround(p[1] + a * (col.g - p[1]));
    p[2] = (uint8_t)lround(p[2] + a * (col.b - p[2]));
}

// Fills the pixels [x0, x1) x [y0, y1) with col, clipped to the canvas.
static void fill_rect(Canvas *c, int x0, int y0, int x1, int y1, Rgb col) {
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > c->w) x1 = c->w;
    if (y1 > c->h) y1 = c->h;
    for (int y = y0; y < y1; y++) {
        uint8_t *p = c->px + 3 * ((size_t)y * (size_t)c->w + (size_t)x0);
        for (int x = x0; x < x1; x++, p += 3) {
            p[0] = col.r;
            p[1] = col.g;
            p[2] = col.b;
        }
    }
}

// Draws a t-pixel outline just outside the pixel rectangle [x0, x1) x [y0, y1).
static void frame_rect(Canvas *c, int x0, int y0, int x1, int y1, int t, Rgb col) {
    fill_rect(c, x0 - t, y0 - t, x1 + t, y0, col);
    fill_rect(c, x0 - t, y1, x1 + t, y1 + t, col);
    fill_rect(c, x0 - t, y0, x0, y1, col);
    fill_rect(c, x1, y0, x1 + t, y1, col);
}

// Adds a round-capped segment of the given width from (ax, ay) to (bx, by) to the coverage
// mask (keeping the larger coverage per pixel, so joints are not painted twice), restricted
// to clip; grows *dirty to include every pixel touched.
static void cover_segment(Canvas *c, double ax, double ay, double bx, double by, double width,
                          IBox clip, IBox *dirty) {
    double hw = width / 2, reach = hw + 1;
    int x0 = (int)floor(fmin(ax, bx) - reach), x1 = (int)ceil(fmax(ax, bx) + reach);
    int y0 = (int)floor(fmin(ay, by) - reach), y1 = (int)ceil(fmax(ay, by) + reach);
    if (x0 < clip.x0) x0 = clip.x0;
    if (y0 < clip.y0) y0 = clip.y0;
    if (x1 > clip.x1) x1 = clip.x1;
    if (y1 > clip.y1) y1 = clip.y1;
    if (x0 >= x1 || y0 >= y1) return;
    double dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
    for (int y = y0; y < y1; y++) {
        for (int x = x0; x < x1; x++) {
            double px = x + 0.5 - ax, py = y + 0.5 - ay;
            double t = len2 > 0 ? (px * dx + py * dy) / len2 : 0;
            if (t < 0) t = 0;
            if (t > 1) t = 1;
            double ex = px - t * dx, ey = py - t * dy;
            double a = hw + 0.5 - sqrt(ex * ex + ey * ey);
            if (a <= 0) continue;
            float *cv = &c->cov[(size_t)y * (size_t)c->w + (size_t)x];
            if (a > *cv) *cv = (float)(a > 1 ? 1 : a);
        }
    }
    if (x0 < dirty->x0) dirty->x0 = x0;
    if (y0 < dirty->y0) dirty->y0 = y0;
    if (x1 > dirty->x1) dirty->x1 = x1;
    if (y1 > dirty->y1) dirty->y1 = y1;
}

// Paints col over the canvas with the coverage mask inside dirty as opacity, then clears it.
static void composite_cover(Canvas *c, Rgb col, IBox dirty) {
    for (int y = dirty.y0; y < dirty.y1; y++) {
        for (int x = dirty.x0; x < dirty.x1; x++) {
            float *cv = &c->cov[(size_t)y * (size_t)c->w + (size_t)x];
            if (*cv > 0) blend(c, x, y, col, *cv);
            *cv = 0;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Text

// A 5x9 bitmap font for ASCII 32..126, designed for this file: rows 0..6 hold capitals and
// digits (row 6 is the baseline row), lowercase letters use rows 2..6, and rows 7..8 hold
// descenders. '#' is ink; rows not listed are blank.
static const char FONT[95][FONT_H][FONT_W + 1] = {
    /*   */ {"....."},
    /* ! */ {"..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."},
    /* " */ {".#.#.", ".#.#.", ".#.#."},
    /* # */ {".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."},
    /* $ */ {"..#..", ".####", "#.#..", ".###.", "..#.#", "####.", "..#.."},
    /* % */ {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"},
    /* & */ {".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#"},
    /* ' */ {"..#..", "..#..", ".#..."},
    /* ( */ {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."},
    /* ) */ {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."},
    /* * */ {".....", "..#..", "#.#.#", ".###.", "#.#.#", "..#.."},
    /* + */ {".....", "..#..", "..#..", "#####", "..#..", "..#.."},
    /* , */ {".....", ".....", ".....", ".....", ".....", ".##..", ".##..", "..#..", ".#..."},
    /* - */ {".....", ".....", ".....", "####."},
    /* . */ {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."},
    /* / */ {"....#", "...#.", "...#.", "..#..", ".#...", ".#...", "#...."},
    /* 0 */ {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."},
    /* 1 */ {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."},
    /* 2 */ {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"},
    /* 3 */ {".###.", "#...#", "....#", "..##.", "....#", "#...#", ".###."},
    /* 4 */ {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."},
    /* 5 */ {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."},
    /* 6 */ {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."},
    /* 7 */ {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."},
    /* 8 */ {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."},
    /* 9 */ {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."},
    /* : */ {".....", ".##..", ".##..", ".....", ".##..", ".##.."},
    /* ; */ {".....", ".##..", ".##..", ".....", ".##..", ".##..", "..#..", ".#..."},
    /* < */ {"...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."},
    /* = */ {".....", ".....", "#####", ".....", "#####"},
    /* > */ {".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."},
    /* ? */ {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."},
    /* @ */ {".###.", "#...#", "#.###", "#.#.#", "#.###", "#....", ".####"},
    /* A */ {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"},
    /* B */ {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."},
    /* C */ {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."},
    /* D */ {"###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."},
    /* E */ {"#####", "#....", "#....", "####.", "#....", "#....", "#####"},
    /* F */ {"#####", "#....", "#....", "####.", "#....", "#....", "#...."},
    /* G */ {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"},
    /* H */ {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"},
    /* I */ {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."},
    /* J */ {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."},
    /* K */ {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"},
    /* L */ {"#....", "#....", "#....", "#....", "#....", "#....", "#####"},
    /* M */ {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"},
    /* N */ {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"},
    /* O */ {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."},
    /* P */ {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."},
    /* Q */ {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"},
    /* R */ {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"},
    /* S */ {".####", "#....", "#....", ".###.", "....#", "....#", "####."},
    /* T */ {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."},
    /* U */ {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."},
    /* V */ {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."},
    /* W */ {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."},
    /* X */ {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"},
    /* Y */ {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."},
    /* Z */ {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"},
    /* [ */ {".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###."},
    /* \ */ {"#....", ".#...", ".#...", "..#..", "...#.", "...#.", "....#"},
    /* ] */ {".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###."},
    /* ^ */ {"..#..", ".#.#.", "#...#"},
    /* _ */ {".....", ".....", ".....", ".....", ".....", ".....", ".....", "#####"},
    /* ` */ {".#...", "..#.."},
    /* a */ {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"},
    /* b */ {"#....", "#....", "####.", "#...#", "#...#", "#...#", "####."},
    /* c */ {".....", ".....", ".####", "#....", "#....", "#....", ".####"},
    /* d */ {"....#", "....#", ".####", "#...#", "#...#", "#...#", ".####"},
    /* e */ {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."},
    /* f */ {"..##.", ".#...", "###..", ".#...", ".#...", ".#...", ".#..."},
    /* g */ {".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", ".###."},
    /* h */ {"#....", "#....", "####.", "#...#", "#...#", "#...#", "#...#"},
    /* i */ {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."},
    /* j */ {"...#.", ".....", "..##.", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."},
    /* k */ {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."},
    /* l */ {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."},
    /* m */ {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#.#.#", "#.#.#"},
    /* n */ {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"},
    /* o */ {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."},
    /* p */ {".....", ".....", "####.", "#...#", "#...#", "#...#", "####.", "#....", "#...."},
    /* q */ {".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", "....#"},
    /* r */ {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."},
    /* s */ {".....", ".....", ".####", "#....", ".###.", "....#", "####."},
    /* t */ {".#...", ".#...", "####.", ".#...", ".#...", ".#..#", "..##."},
    /* u */ {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"},
    /* v */ {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."},
    /* w */ {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."},
    /* x */ {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"},
    /* y */ {".....", ".....", "#...#", "#...#", "#...#", "#...#", ".####", "....#", ".###."},
    /* z */ {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"},
    /* { */ {"..##.", ".#...", ".#...", "#....", ".#...", ".#...", "..##."},
    /* | */ {"..#..", "..#..", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."},
    /* } */ {".##..", "...#.", "...#.", "....#", "...#.", "...#.", ".##.."},
    /* ~ */ {".....", ".....", ".....", ".##.#", "#.##."},
};

// A few symbols beyond ASCII that labels in this project use, in the same design.
typedef struct {
    unsigned cp;  // Unicode code point
    char rows[FONT_H][FONT_W + 1];
} ExtraGlyph;

static const ExtraGlyph EXTRA_GLYPHS[] = {
    {0x00B1, {"..#..", "..#..", "#####", "..#..", "..#..", ".....", "#####"}},         // ±
    {0x00B2, {".##..", "#..#.", "..#..", ".#...", "####."}},                          // ²
    {0x00B3, {"###..", "...#.", ".##..", "...#.", "###.."}},                          // ³
    {0x00B5, {".....", ".....", "#...#", "#...#", "#...#", "##..#", "#.##.", "#...."}}, // µ
    {0x00B7, {".....", ".....", ".....", ".##..", ".##.."}},                          // ·
    {0x00D7, {".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"}},                 // ×
    {0x03B1, {".....", ".....", ".##.#", "#..#.", "#..#.", "#..#.", ".##.#"}},        // α
    {0x03B2, {".##..", "#..#.", "#..#.", "###..", "#..#.", "#...#", "####.", "#....", "#...."}},
    {0x03B5, {".....", ".....", ".####", "#....", ".###.", "#....", ".####"}},        // ε
    {0x03BB, {"##...", "..#..", "..#..", ".#.#.", ".#.#.", "#...#", "#...#"}},        // λ
    {0x03BC, {".....", ".....", "#...#", "#...#", "#...#", "##..#", "#.##.", "#...."}}, // μ
    {0x03C3, {".....", ".....", ".####", "#..#.", "#...#", "#...#", ".###."}},        // σ
    {0x2248, {".....", ".##.#", "#.##.", ".....", ".##.#", "#.##."}},                 // ≈
};
#define N_EXTRA_GLYPHS ((int)(sizeof EXTRA_GLYPHS / sizeof EXTRA_GLYPHS[0]))

// Returns the glyph drawn for code point cp ('?' when the font has none).
static const char (*glyph(unsigned cp))[FONT_W + 1] {
    if (cp >= 32 && cp <= 126) return FONT[cp - 32];
    for (int i = 0; i < N_EXTRA_GLYPHS; i++)
        if (EXTRA_GLYPHS[i].cp == cp) return EXTRA_GLYPHS[i].rows;
    return FONT['?' - 32];
}

// Decodes the UTF-8 character at *p and advances *p past it; a malformed sequence gives '?'
// (one per bad byte). *p must not point at the terminating NUL.
static unsigned utf8_next(const unsigned char **p) {
    const unsigned char *s = *p;
    unsigned c = *s++;
    int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    if (c >= 0x80 && extra == 0) {
        *p = s;
        return '?';
    }
    unsigned cp = extra == 0 ? c : c & (0x3Fu >> extra);
    for (int i = 0; i < extra; i++) {
        if ((*s & 0xC0) != 0x80) {
            *p = s;
            return '?';
        }
        cp = cp << 6 | (*s++ & 0x3Fu);
    }
    *p = s;
    return cp;
}

// Returns the number of characters (UTF-8 code points) of s.
static int text_len(const char *s) {
    int n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; n++) utf8_next(&p);
    return n;
}

// Returns the width in pixels of s drawn at the given scale.
static int text_width(const char *s, int scale) {
    int n = text_len(s);
    return n > 0 ? n * (FONT_W + 1) * scale - scale : 0;
}

// Draws s at the given scale with its top-left corner at (x, y); when up is true the text is
// turned a quarter turn counter-clockwise (reading upwards) and (x, y) is its bottom-left corner.
static void draw_text_dir(Canvas *c, int x, int y, const char *s, int scale, Rgb col, bool up) {
    int i = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        const char(*g)[FONT_W + 1] = glyph(utf8_next(&p));
        for (int gy = 0; gy < FONT_H; gy++) {
            for (int gx = 0; gx < FONT_W; gx++) {
                if (g[gy][gx] != '#') continue;
                int u = i * (FONT_W + 1) + gx;  // along the text
                if (up)
                    fill_rect(c, x + gy * scale, y - (u + 1) * scale, x + (gy + 1) * scale,
                              y - u * scale, col);
                else
                    fill_rect(c, x + u * scale, y + gy * scale, x + (u + 1) * scale,
                              y + (gy + 1) * scale, col);
            }
        }
        i++;
    }
}

// Horizontal alignment of a text relative to its anchor x.
typedef enum { ALIGN_LEFT, ALIGN_CENTER, ALIGN_RIGHT } Align;

// Returns the left edge of a text of width tw anchored at x with alignment al.
static int align_left(int x, int tw, Align al) {
    return al == ALIGN_LEFT ? x : al == ALIGN_CENTER ? x - tw / 2 : x - tw;
}

// Draws horizontal text with its top at y, aligned at x and kept inside the canvas.
static void draw_text(Canvas *c, int x, int y, const char *s, int scale, Align al, Rgb col) {
    int tw = text_width(s, scale);
    int left = align_left(x, tw, al);
    if (left + tw > c->w - 2) left = c->w - 2 - tw;
    if (left < 2) left = 2;
    draw_text_dir(c, left, y, s, scale, col, false);
}

// ---------------------------------------------------------------------------------------
// Axes: ranges and tick labels

typedef struct {
    double lo, hi;  // range in axis units: data units, or log10 of them on a log axis
    bool log;
    double step;    // linear axes: tick spacing (0 on log axes)
    int n;          // major ticks; MAX_TICKS + 1 marks "too many for this step"
    double tick[MAX_TICKS];  // axis units
    char label[MAX_TICKS][32];
    int n_minor;
    double minor[MAX_MINOR];  // axis units
} Axis;

// Maps a value in axis units to its fraction of the way along the axis.
static double axis_frac(const Axis *a, double u) { return (u - a->lo) / (a->hi - a->lo); }

// True when axis position u (axis units) lies within the axis range (with a little slack).
static bool axis_inside(const Axis *a, double u) {
    double f = axis_frac(a, u);
    return f >= -1e-6 && f <= 1 + 1e-6;
}

// Returns the smallest step of the form {1, 2, 5} x 10^k that is >= raw (raw > 0).
static double nice_step(double raw) {
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    if (f <= 1 + 1e-9) return mag;
    if (f <= 2 + 1e-9) return 2 * mag;
    if (f <= 5 + 1e-9) return 5 * mag;
    return 10 * mag;
}

// Returns the 1-2-5 step following step.
static double next_step(double step) { return nice_step(step * 1.5); }

// Rewrites the mantissa and exponent printf gave ("2.50e-05", "1.0e+06") as "2.5e-5", "1e6".
static void tidy_exponent(char *buf) {
    char *e = strchr(buf, 'e');
    if (!e) return;
    char exp_part[16];
    const char *p = e + 1;
    bool neg = *p == '-';
    if (*p == '+' || *p == '-') p++;
    while (*p == '0' && p[1]) p++;
    snprintf(exp_part, sizeof exp_part, "e%s%s", neg ? "-" : "", p);
    char *end = e;
    if (memchr(buf, '.', (size_t)(e - buf))) {
        while (end[-1] == '0') end--;
        if (end[-1] == '.') end--;
    }
    memcpy(end, exp_part, strlen(exp_part) + 1);
}

// Formats tick value v of a linear axis with tick spacing step; max_abs (the largest
// magnitude on the axis) chooses between fixed and scientific notation.
static void fmt_linear(char *buf, size_t cap, double v, double step, double max_abs) {
    if (fabs(v) < step * 1e-6) v = 0;
    int ks = (int)floor(log10(step) + 1e-9);
    int km = max_abs > 0 ? (int)floor(log10(max_abs) + 1e-9) : 0;
    if (km >= 6 || km <= -4) {
        if (v == 0) {
            snprintf(buf, cap, "0");
            return;
        }
        int d = (int)floor(log10(fabs(v)) + 1e-9) - ks;
        snprintf(buf, cap, "%.*e", d < 0 ? 0 : d > 12 ? 12 : d, v);
        tidy_exponent(buf);
    } else {
        snprintf(buf, cap, "%.*f", ks < 0 ? (-ks > 12 ? 12 : -ks) : 0, v);
    }
}

// Formats the log-axis tick m x 10^e: plain decimals for moderate e, else "me<e>".
static void fmt_log(char *buf, size_t cap, int m, int e) {
    if (e >= -3 && e <= 4)
        snprintf(buf, cap, "%.*f", e < 0 ? -e : 0, m * pow(10, e));
    else
        snprintf(buf, cap, "%de%d", m, e);
}

// Fills a with ticks at the multiples of step inside [lo, hi]; with expand the range first
// grows outward to the nearest multiples. Sets a->n = MAX_TICKS + 1 if there would be too many.
static void axis_linear(Axis *a, double lo, double hi, double step, bool expand) {
    double k0 = ceil(lo / step - 1e-9), k1 = floor(hi / step + 1e-9);
    if (expand) {
        k0 = floor(lo / step + 1e-9);
        k1 = ceil(hi / step - 1e-9);
        lo = k0 * step;
        hi = k1 * step;
    }
    a->lo = lo;
    a->hi = hi;
    a->log = false;
    a->step = step;
    a->n = 0;
    a->n_minor = 0;
    if (!(k1 - k0 + 1 <= MAX_TICKS)) {
        a->n = MAX_TICKS + 1;
        return;
    }
    double max_abs = fmax(fabs(lo), fabs(hi));
    for (double k = k0; k <= k1; k++) {
        double v = k * step;
        a->tick[a->n] = v;
        fmt_linear(a->label[a->n], sizeof a->label[0], v, step, max_abs);
        a->n++;
    }
}

// Returns the width in pixels of the widest tick label of a.
static int axis_label_width(const Axis *a) {
    int w = 0;
    for (int i = 0; i < a->n && i < MAX_TICKS; i++) {
        int tw = text_width(a->label[i], TEXT_SCALE);
        if (tw > w) w = tw;
    }
    return w;
}

// Fills a as a linear axis over [lo, hi] (lo < hi) drawn len pixels long, with the smallest
// 1-2-5 step whose labels fit (side by side when horizontal, stacked when vertical).
static void axis_fit_linear(Axis *a, double lo, double hi, double len, bool vertical,
                            bool expand) {
    int target = (int)(len / (vertical ? 70 : 110));
    if (target < 2) target = 2;
    if (target > 20) target = 20;
    double step = nice_step((hi - lo) / target);
    for (int it = 0; it < 64; it++) {
        axis_linear(a, lo, hi, step, expand);
        if (a->n <= MAX_TICKS) {
            double spacing = step / (a->hi - a->lo) * len;
            double need = vertical ? 2.0 * LINE_H : axis_label_width(a) + 2.0 * CHAR_ADV;
            if (spacing >= need) return;
        }
        step = next_step(step);
    }
    if (a->n > MAX_TICKS) a->n = 0;
}

// Adds tick m x 10^e to a (labelled or minor) when it lies inside the range and there is room.
static void axis_log_tick(Axis *a, int m, int e, bool labelled) {
    double u = log10((double)m) + e;
    if (!axis_inside(a, u)) return;
    if (labelled && a->n < MAX_TICKS) {
        a->tick[a->n] = u;
        fmt_log(a->label[a->n], sizeof a->label[0], m, e);
        a->n++;
    } else if (!labelled && a->n_minor < MAX_MINOR) {
        a->minor[a->n_minor++] = u;
    }
}

// Fills a as a log axis over [lo, hi] (data units, 0 < lo < hi) drawn len pixels long. With
// expand the range grows to whole decades. Up to two decades get labels at 1, 2, 5 x 10^k;
// longer axes get every k-th decade labelled and minor ticks in between.
static void axis_log(Axis *a, double lo, double hi, double len, bool expand) {
    int e0 = (int)floor(log10(lo) + 1e-9), e1 = (int)ceil(log10(hi) - 1e-9);
    if (e1 <= e0) e1 = e0 + 1;
    a->log = true;
    a->step = 0;
    a->lo = expand ? e0 : log10(lo);
    a->hi = expand ? e1 : log10(hi);
    a->n = 0;
    a->n_minor = 0;
    int ndec = e1 - e0;
    int max_ticks = (int)(len / (2.0 * LINE_H));
    if (max_ticks < 2) max_ticks = 2;
    if (ndec <= 2 && 3 * ndec + 1 <= max_ticks) {
        for (int e = e0; e <= e1; e++)
            for (int m = 1; m <= 9; m++) axis_log_tick(a, m, e, m == 1 || m == 2 || m == 5);
        return;
    }
    int k = (ndec + max_ticks - 2) / (max_ticks - 1);
    if (k < 1) k = 1;
    for (int e = e0; e <= e1; e++) {
        bool labelled = ((e % k) + k) % k == 0;
        axis_log_tick(a, 1, e, labelled);
        if (k == 1 && ndec <= 12)
            for (int m = 2; m <= 9; m++) axis_log_tick(a, m, e, false);
    }
}

// Widens an empty or nearly empty range [*lo, *hi] around its value (constant data).
static void pad_range(double *lo, double *hi, bool log) {
    double scale = fmax(fabs(*lo), fabs(*hi));
    if (*hi - *lo > scale * 1e-12) return;
    if (log) {
        *lo /= 3;
        *hi *= 3;
        return;
    }
    double d = scale > 0 ? scale * 0.1 : 1;
    *lo -= d;
    *hi += d;
}

// ---------------------------------------------------------------------------------------
// Frame: canvas size, plot area and the two axes

typedef struct {
    int w, h;
    int x0, y0, x1, y1;  // plot area in pixels: [x0, x1) x [y0, y1)
    Axis x, y;
    int title_scale;
} Frame;

// Pixel x of axis position u on the x axis.
static double frame_px(const Frame *f, double u) {
    return f->x0 + axis_frac(&f->x, u) * (f->x1 - f->x0);
}

// Pixel y of axis position u on the y axis.
static double frame_py(const Frame *f, double u) {
    return f->y1 - axis_frac(&f->y, u) * (f->y1 - f->y0);
}

// True when s is a non-empty string.
static bool has_text(const char *s) { return s && *s; }

// Height of the band above the plot area (title and padding).
static int top_margin(const char *title, int title_scale) {
    return has_text(title) ? PAD + FONT_H * title_scale + PAD : 2 * PAD;
}

// Height of the band below the plot area (ticks, tick labels, x label).
static int bottom_margin(const char *xlabel) {
    return TICK_LEN + 6 + LINE_H + (has_text(xlabel) ? 8 + LINE_H : 0) + PAD;
}

// Width of the band left of the plot area (y label, tick labels, ticks).
static int left_margin(const char *ylabel, const Axis *y) {
    return PAD + (has_text(ylabel) ? LINE_H + YLABEL_GAP : 0) + axis_label_width(y) + 6 + TICK_LEN;
}

// Checks the requested canvas size and stores it in f (0 picks the default).
static int frame_size(Frame *f, const char *path, int w, int h, int dw, int dh, HpErr *err) {
    f->w = w ? w : dw;
    f->h = h ? h : dh;
    if (f->w < MIN_DIM || f->h < MIN_DIM || f->w > MAX_DIM || f->h > MAX_DIM)
        return hp_fail(err, "%s: canvas %d x %d is outside %d..%d pixels", path, f->w, f->h,
                       MIN_DIM, MAX_DIM);
    return 0;
}

// Picks the title scale: large when the title fits across the canvas.
static int pick_title_scale(const char *title, int w) {
    return has_text(title) && text_width(title, TITLE_SCALE) > w - 2 * PAD ? TEXT_SCALE
                                                                           : TITLE_SCALE;
}

// Left edge of the (rotated) y axis label: beside the y tick labels.
static int ylabel_left(const Frame *f) {
    return f->x0 - TICK_LEN - 6 - axis_label_width(&f->y) - YLABEL_GAP - LINE_H;
}

// True when a log y axis has room for grid lines at its minor ticks (tall decades).
static bool minor_grid(const Frame *f) {
    return f->y.log && (f->y1 - f->y0) / (f->y.hi - f->y.lo) >= 100;
}

// Draws grid lines at the ticks of both axes inside the plot area (minor ones lighter).
static void draw_grid(Canvas *c, const Frame *f) {
    for (int i = 0; i < (minor_grid(f) ? f->y.n_minor : 0); i++) {
        int y = (int)floor(frame_py(f, f->y.minor[i]));
        fill_rect(c, f->x0, y, f->x1, y + 1, GRID_MINOR);
    }
    for (int i = 0; i < f->x.n; i++) {
        int x = (int)floor(frame_px(f, f->x.tick[i]));
        fill_rect(c, x, f->y0, x + 1, f->y1, GRID);
    }
    for (int i = 0; i < f->y.n; i++) {
        int y = (int)floor(frame_py(f, f->y.tick[i]));
        fill_rect(c, f->x0, y, f->x1, y + 1, GRID);
    }
}

// Draws the frame, ticks, tick labels, title and axis labels around the plot area.
static void draw_axes(Canvas *c, const Frame *f, const char *title, const char *xlabel,
                      const char *ylabel) {
    frame_rect(c, f->x0, f->y0, f->x1, f->y1, 1, FRAME_INK);
    int label_top = f->y1 + 1 + TICK_LEN + 5;
    for (int i = 0; i < f->x.n; i++) {
        int x = (int)floor(frame_px(f, f->x.tick[i]));
        fill_rect(c, x, f->y1 + 1, x + 1, f->y1 + 1 + TICK_LEN, FRAME_INK);
        draw_text(c, x, label_top, f->x.label[i], TEXT_SCALE, ALIGN_CENTER, INK);
    }
    for (int i = 0; i < f->y.n_minor; i++) {
        int y = (int)floor(frame_py(f, f->y.minor[i]));
        fill_rect(c, f->x0 - 1 - TICK_LEN / 2, y, f->x0 - 1, y + 1, FRAME_INK);
    }
    for (int i = 0; i < f->y.n; i++) {
        int y = (int)floor(frame_py(f, f->y.tick[i]));
        fill_rect(c, f->x0 - 1 - TICK_LEN, y, f->x0 - 1, y + 1, FRAME_INK);
        draw_text(c, f->x0 - 1 - TICK_LEN - 5, y - CAP_H / 2, f->y.label[i], TEXT_SCALE,
                  ALIGN_RIGHT, INK);
    }
    int mid_x = (f->x0 + f->x1) / 2;
    if (has_text(title)) draw_text(c, mid_x, PAD, title, f->title_scale, ALIGN_CENTER, INK);
    if (has_text(xlabel))
        draw_text(c, mid_x, label_top + LINE_H + 8, xlabel, TEXT_SCALE, ALIGN_CENTER, INK);
    if (has_text(ylabel)) {
        int tw = text_width(ylabel, TEXT_SCALE);
        int bottom = (f->y0 + f->y1) / 2 + tw / 2;
        if (bottom > c->h - 2) bottom = c->h - 2;
        if (bottom - tw < 2) bottom = tw + 2;
        draw_text_dir(c, ylabel_left(f), bottom, ylabel, TEXT_SCALE, INK, true);
    }
}

// ---------------------------------------------------------------------------------------
// PNG output

// libpng's error message, kept so the failure can be reported without printing.
typedef struct {
    char msg[200];
} PngErrMsg;

// libpng error callback: records the message and unwinds to the setjmp in png_encode.
static void png_error_cb(png_structp png, png_const_charp msg) {
    PngErrMsg *m = png_get_error_ptr(png);
    snprintf(m->msg, sizeof m->msg, "%s", msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}

// libpng warning callback: library code does not print, and warnings do not stop the write.
static void png_warning_cb(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

// Encodes the canvas into fp through png/info; returns -1 if libpng raised an error. Kept
// apart so that no local variable lives across the setjmp.
static int png_encode(png_structp png, png_infop info, FILE *fp, const Canvas *c,
                      png_bytep *rows) {
    if (setjmp(png_jmpbuf(png))) return -1;
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)c->w, (png_uint_32)c->h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    return 0;
}

// Writes the canvas to path as an 8-bit RGB PNG, atomically.
static int canvas_write_png(const Canvas *c, const char *path, HpErr *err) {
    char *tmp;
    FILE *fp;
    if (atomic_open(path, &tmp, &fp, err) < 0) return -1;
    PngErrMsg msg = {{0}};
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, &msg, png_error_cb, png_warning_cb);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        atomic_abort(fp, tmp);
        return hp_fail(err, "%s: cannot write PNG: libpng initialisation failed", path);
    }
    png_bytep *rows = hp_alloc((size_t)c->h, sizeof *rows, err);
    if (!rows) {
        png_destroy_write_struct(&png, &info);
        atomic_abort(fp, tmp);
        return hp_prefix(err, path);
    }
    for (int y = 0; y < c->h; y++) rows[y] = c->px + (size_t)y * (size_t)c->w * 3;
    int rc = png_encode(png, info, fp, c, rows);
    png_destroy_write_struct(&png, &info);
    free(rows);
    if (rc < 0) {
        atomic_abort(fp, tmp);
        return hp_fail(err, "%s: cannot write PNG: %s", path, msg.msg);
    }
    return atomic_commit(fp, tmp, path, err);
}

// ---------------------------------------------------------------------------------------
// Line charts: checking, layout, legend placement

typedef struct {
    Frame f;
    double y_floor;      // log y: values at or below are drawn here
    int n_series;
    bool markers;        // a dot on every finite point
    bool legend;         // drawn for two or more series
    int lx, ly, lw, lh;  // legend box in pixels (left, top, width, height)
} LineLayout;

#define LEGEND_PAD 10
#define LEGEND_ROW (LINE_H + 6)
#define LEGEND_SWATCH 30

// Writes the legend name of series i into buf.
static const char *series_name(const PlotSeries *s, int i, char *buf, size_t cap) {
    if (s->name) return s->name;
    snprintf(buf, cap, "series %d", i + 1);
    return buf;
}

// Data ranges of a line chart.
typedef struct {
    double xlo, xhi, ylo, yhi;  // over finite points (log y: clamped to the floor)
    double y_floor;
    bool fixed_y;
} LineRanges;

// Checks every series (data present, n >= 2, a finite point) and finds the data ranges and,
// for a log y axis, the floor below which values are clamped.
static int line_ranges(const char *path, const PlotSeries *s, int ns, const PlotOpts *o,
                       LineRanges *r, HpErr *err) {
    if (!s || ns < 1) return hp_fail(err, "%s: no series to plot", path);
    r->xlo = r->ylo = INFINITY;
    r->xhi = r->yhi = -INFINITY;
    double minpos = INFINITY, maxpos = -INFINITY;
    bool nonpos = false;
    for (int k = 0; k < ns; k++) {
        char nb[32];
        const char *name = series_name(&s[k], k, nb, sizeof nb);
        if (!s[k].x || !s[k].y) return hp_fail(err, "%s: series '%s' has no data", path, name);
        if (s[k].n < 2)
            return hp_fail(err, "%s: series '%s' has %zu point(s), at least 2 are needed", path,
                           name, s[k].n);
        size_t finite = 0;
        for (size_t i = 0; i < s[k].n; i++) {
            double x = s[k].x[i], y = s[k].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            finite++;
            r->xlo = fmin(r->xlo, x);
            r->xhi = fmax(r->xhi, x);
            r->ylo = fmin(r->ylo, y);
            r->yhi = fmax(r->yhi, y);
            if (y > 0) {
                minpos = fmin(minpos, y);
                maxpos = fmax(maxpos, y);
            } else {
                nonpos = true;
            }
        }
        if (finite == 0)
            return hp_fail(err, "%s: series '%s' has no finite points", path, name);
    }
    r->fixed_y = o->y_min < o->y_max;
    if (r->fixed_y && (!isfinite(o->y_min) || !isfinite(o->y_max) || (o->log_y && o->y_min <= 0)))
        return hp_fail(err, "%s: fixed y range [%g, %g] is not usable%s", path, o->y_min,
                       o->y_max, o->log_y ? " on a log axis" : "");
    r->y_floor = 0;
    if (o->log_y) {
        if (o->y_floor > 0)
            r->y_floor = o->y_floor;
        else if (maxpos > 0)
            r->y_floor = fmax(minpos, maxpos * 1e-10);
        else if (r->fixed_y)
            r->y_floor = o->y_min;
        else
            return hp_fail(err, "%s: a log y axis needs positive y values (or a y_floor)", path);
        r->ylo = (nonpos || !(minpos > r->y_floor)) ? r->y_floor : minpos;
        r->yhi = maxpos > r->y_floor ? maxpos : r->y_floor;
    }
    if (r->fixed_y) {
        r->ylo = o->y_min;
        r->yhi = o->y_max;
    }
    if (!isfinite(r->xhi - r->xlo) || !isfinite(r->yhi - r->ylo))
        return hp_fail(err, "%s: data range too large to plot", path);
    pad_range(&r->xlo, &r->xhi, false);
    pad_range(&r->ylo, &r->yhi, o->log_y);
    return 0;
}

// Pixel position of point i of s; false when the point is not finite.
static bool line_point(const LineLayout *L, const PlotSeries *s, size_t i, double *px,
                       double *py) {
    double x = s->x[i], y = s->y[i];
    if (!isfinite(x) || !isfinite(y)) return false;
    double u = L->f.y.log ? log10(y > L->y_floor ? y : L->y_floor) : y;
    *px = fmin(fmax(frame_px(&L->f, x), -1e5), 1e5);
    *py = fmin(fmax(frame_py(&L->f, u), -1e5), 1e5);
    return true;
}

// True when pixel (x, y) lies in the box (left, top, width, height) grown by m pixels.
static bool in_box(double x, double y, int bx, int by, int bw, int bh, int m) {
    return x >= bx - m && x <= bx + bw + m && y >= by - m && y <= by + bh + m;
}

// Counts samples (every few pixels along every segment) of the lines inside the box.
static long count_hidden(const LineLayout *L, const PlotSeries *s, int ns, int bx, int by) {
    long hits = 0;
    for (int k = 0; k < ns; k++) {
        for (size_t i = 0; i < s[k].n; i++) {
            double ax, ay, bx2, by2;
            if (!line_point(L, &s[k], i, &ax, &ay)) continue;
            if (i + 1 >= s[k].n || !line_point(L, &s[k], i + 1, &bx2, &by2)) {
                hits += in_box(ax, ay, bx, by, L->lw, L->lh, 4);
                continue;
            }
            double len = hypot(bx2 - ax, by2 - ay);
            int steps = len > 3 ? (int)fmin(len / 3, 2000) : 1;
            for (int j = 0; j < steps; j++) {
                double t = (double)j / steps;
                hits += in_box(ax + t * (bx2 - ax), ay + t * (by2 - ay), bx, by, L->lw, L->lh, 4);
            }
        }
    }
    return hits;
}

// Sizes the legend and puts it in the spot inside the plot area that hides the least data
// (corners first, then the middle of the top and bottom edges); returns the samples hidden.
static long place_legend(LineLayout *L, const PlotSeries *s, int ns) {
    int name_w = 0;
    for (int k = 0; k < ns; k++) {
        char nb[32];
        int tw = text_width(series_name(&s[k], k, nb, sizeof nb), TEXT_SCALE);
        if (tw > name_w) name_w = tw;
    }
    const Frame *f = &L->f;
    L->lw = LEGEND_PAD + LEGEND_SWATCH + 8 + name_w + LEGEND_PAD;
    L->lh = 2 * LEGEND_PAD + ns * LEGEND_ROW - 6;
    int in = 10;
    int left = f->x0 + in, right = f->x1 - in - L->lw, mid = (f->x0 + f->x1 - L->lw) / 2;
    int top = f->y0 + in, bottom = f->y1 - in - L->lh;
    const int cand[6][2] = {{right, top},    {left, top},  {right, bottom},
                            {left, bottom}, {mid, top},   {mid, bottom}};
    long best = -1;
    for (int i = 0; i < 6; i++) {
        long hits = count_hidden(L, s, ns, cand[i][0], cand[i][1]);
        if (best < 0 || hits < best) {
            best = hits;
            L->lx = cand[i][0];
            L->ly = cand[i][1];
        }
    }
    return best;
}

// Fits a linear y axis: a fixed range as given; else the data range grown to whole ticks, or
// (when that would waste more than 30% of the height) padded by 3% with ticks inside.
static void fit_y_linear(Axis *a, const LineRanges *r, double len) {
    axis_fit_linear(a, r->ylo, r->yhi, len, true, !r->fixed_y);
    double span = r->yhi - r->ylo;
    if (!r->fixed_y && a->hi - a->lo > 1.3 * span)
        axis_fit_linear(a, r->ylo - 0.03 * span, r->yhi + 0.03 * span, len, true, false);
}

// Moves the legend into a band right of the plot area (narrowing it and refitting the x axis)
// when every spot inside hides data and the plot keeps at least half the canvas width.
static void legend_outside(LineLayout *L, const LineRanges *r) {
    Frame *f = &L->f;
    int lx = f->w - PAD - L->lw;
    int x1 = lx - 2 * CHAR_ADV;
    if (x1 - f->x0 < f->w / 2 || L->lh > f->y1 - f->y0) return;
    f->x1 = x1;
    axis_fit_linear(&f->x, r->xlo, r->xhi, f->x1 - f->x0, false, false);
    L->lx = lx;
    L->ly = f->y0;
}

// Checks the input and lays out a line chart: ranges, ticks, margins, legend.
static int line_layout(LineLayout *L, const char *path, const char *title, const char *xlabel,
                       const char *ylabel, const PlotSeries *s, int ns, const PlotOpts *opts,
                       HpErr *err) {
    if (!path) return hp_fail(err, "plot: no output path");
    const PlotOpts defaults = {0};
    const PlotOpts *o = opts ? opts : &defaults;
    memset(L, 0, sizeof *L);
    Frame *f = &L->f;
    if (frame_size(f, path, o->width, o->height, DEFAULT_W, DEFAULT_H, err) < 0) return -1;
    LineRanges r = {0};
    if (line_ranges(path, s, ns, o, &r, err) < 0) return -1;
    L->y_floor = r.y_floor;
    L->n_series = ns;
    L->markers = o->markers;
    f->title_scale = pick_title_scale(title, f->w);
    f->y0 = top_margin(title, f->title_scale);
    f->y1 = f->h - bottom_margin(xlabel);
    if (f->y1 - f->y0 < 40) return hp_fail(err, "%s: canvas too small for the chart", path);
    if (o->log_y)
        axis_log(&f->y, r.ylo, r.yhi, f->y1 - f->y0, !r.fixed_y);
    else
        fit_y_linear(&f->y, &r, f->y1 - f->y0);
    f->x0 = left_margin(ylabel, &f->y);
    f->x1 = f->w - (3 * CHAR_ADV + PAD);
    if (f->x1 - f->x0 < 40) return hp_fail(err, "%s: canvas too small for the chart", path);
    axis_fit_linear(&f->x, r.xlo, r.xhi, f->x1 - f->x0, false, false);
    L->legend = ns >= 2;
    if (L->legend && place_legend(L, s, ns) > 0) legend_outside(L, &r);
    return 0;
}

// ---------------------------------------------------------------------------------------
// Line charts: PNG

// Draws series s in colour col into the plot area: anti-aliased segments between finite
// neighbours, a dot for an isolated finite point (and for every point with markers).
static void draw_series(Canvas *c, const LineLayout *L, const PlotSeries *s, Rgb col) {
    IBox clip = {L->f.x0, L->f.y0, L->f.x1, L->f.y1};
    IBox dirty = {c->w, c->h, 0, 0};
    bool prev_ok = false;
    double px = 0, py = 0;
    for (size_t i = 0; i < s->n; i++) {
        double x, y;
        bool ok = line_point(L, s, i, &x, &y);
        if (ok && prev_ok) cover_segment(c, px, py, x, y, LINE_WIDTH, clip, &dirty);
        bool next_ok = i + 1 < s->n && isfinite(s->x[i + 1]) && isfinite(s->y[i + 1]);
        if (ok && (L->markers || (!prev_ok && !next_ok)))
            cover_segment(c, x, y, x, y, 2 * LINE_WIDTH + (L->markers ? 3 : 0), clip, &dirty);
        prev_ok = ok;
        px = x;
        py = y;
    }
    if (dirty.x0 < dirty.x1) composite_cover(c, col, dirty);
}

// Draws the legend box: a swatch of each series' colour and its name.
static void draw_legend(Canvas *c, const LineLayout *L, const PlotSeries *s, int ns) {
    fill_rect(c, L->lx, L->ly, L->lx + L->lw, L->ly + L->lh, WHITE);
    frame_rect(c, L->lx, L->ly, L->lx + L->lw, L->ly + L->lh, 1, LEGEND_EDGE);
    IBox clip = {0, 0, c->w, c->h};
    for (int k = 0; k < ns; k++) {
        char nb[32];
        int top = L->ly + LEGEND_PAD + k * LEGEND_ROW;
        double mid = top + CAP_H / 2.0;
        IBox dirty = {c->w, c->h, 0, 0};
        cover_segment(c, L->lx + LEGEND_PAD, mid, L->lx + LEGEND_PAD + LEGEND_SWATCH, mid,
                      LINE_WIDTH + 0.5, clip, &dirty);
        composite_cover(c, PALETTE[k % N_PALETTE], dirty);
        draw_text(c, L->lx + LEGEND_PAD + LEGEND_SWATCH + 8, top,
                  series_name(&s[k], k, nb, sizeof nb), TEXT_SCALE, ALIGN_LEFT, INK);
    }
}

// Line chart as PNG (contract in plot.h).
int plot_lines(const char *path, const char *title, const char *xlabel, const char *ylabel,
               const PlotSeries *series, int n_series, const PlotOpts *opts, HpErr *err) {
    LineLayout L;
    if (line_layout(&L, path, title, xlabel, ylabel, series, n_series, opts, err) < 0) return -1;
    Canvas c;
    if (canvas_init(&c, L.f.w, L.f.h, WHITE, err) < 0) return hp_prefix(err, path);
    draw_grid(&c, &L.f);
    for (int k = 0; k < n_series; k++) draw_series(&c, &L, &series[k], PALETTE[k % N_PALETTE]);
    draw_axes(&c, &L.f, title, xlabel, ylabel);
    if (L.legend) draw_legend(&c, &L, series, n_series);
    int rc = canvas_write_png(&c, path, err);
    canvas_free(&c);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Line charts: SVG

// Writes s to fp with XML's special characters escaped (control bytes become spaces).
static void svg_escape(FILE *fp, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '&': fputs("&amp;", fp); break;
        case '<': fputs("&lt;", fp); break;
        case '>': fputs("&gt;", fp); break;
        case '"': fputs("&quot;", fp); break;
        default: fputc(*p < 32 ? ' ' : *p, fp);
        }
    }
}

// Writes a text element whose top is at y (as for the PNG font), anchored at x.
static void svg_text(FILE *fp, double x, double y, const char *s, int scale, const char *anchor) {
    fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%d\" text-anchor=\"%s\">", x,
            y + FONT_CAP * scale, scale == TITLE_SCALE ? 26 : 18, anchor);
    svg_escape(fp, s);
    fputs("</text>\n", fp);
}

// Writes "#rrggbb" for col into buf.
static const char *svg_colour(char buf[8], Rgb col) {
    snprintf(buf, 8, "#%02x%02x%02x", col.r, col.g, col.b);
    return buf;
}

// Writes a line element from (ax, ay) to (bx, by).
static void svg_line(FILE *fp, double ax, double ay, double bx, double by) {
    fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", ax, ay, bx, by);
}

// Writes the grid, frame, ticks, tick labels, title and axis labels of f.
static void svg_axes(FILE *fp, const Frame *f, const char *title, const char *xlabel,
                     const char *ylabel) {
    char col[8];
    fprintf(fp, "<g stroke=\"%s\" stroke-width=\"1\">\n", svg_colour(col, GRID_MINOR));
    for (int i = 0; i < (minor_grid(f) ? f->y.n_minor : 0); i++) {
        double y = frame_py(f, f->y.minor[i]);
        svg_line(fp, f->x0, y, f->x1, y);
    }
    fprintf(fp, "</g>\n<g stroke=\"%s\" stroke-width=\"1\">\n", svg_colour(col, GRID));
    for (int i = 0; i < f->x.n; i++) {
        double x = frame_px(f, f->x.tick[i]);
        svg_line(fp, x, f->y0, x, f->y1);
    }
    for (int i = 0; i < f->y.n; i++) {
        double y = frame_py(f, f->y.tick[i]);
        svg_line(fp, f->x0, y, f->x1, y);
    }
    fprintf(fp, "</g>\n<g stroke=\"%s\" stroke-width=\"1\">\n", svg_colour(col, FRAME_INK));
    for (int i = 0; i < f->x.n; i++) {
        double x = frame_px(f, f->x.tick[i]);
        svg_line(fp, x, f->y1 + 0.5, x, f->y1 + 1 + TICK_LEN);
    }
    for (int i = 0; i < f->y.n_minor; i++) {
        double y = frame_py(f, f->y.minor[i]);
        svg_line(fp, f->x0 - 1 - TICK_LEN / 2, y, f->x0 - 0.5, y);
    }
    for (int i = 0; i < f->y.n; i++) {
        double y = frame_py(f, f->y.tick[i]);
        svg_line(fp, f->x0 - 1 - TICK_LEN, y, f->x0 - 0.5, y);
    }
    fprintf(fp, "</g>\n<g fill=\"%s\">\n", svg_colour(col, INK));
    int label_top = f->y1 + 1 + TICK_LEN + 5;
    for (int i = 0; i < f->x.n; i++)
        svg_text(fp, frame_px(f, f->x.tick[i]), label_top, f->x.label[i], TEXT_SCALE, "middle");
    for (int i = 0; i < f->y.n; i++)
        svg_text(fp, f->x0 - 1 - TICK_LEN - 5, frame_py(f, f->y.tick[i]) - CAP_H / 2.0,
                 f->y.label[i], TEXT_SCALE, "end");
    double mid_x = (f->x0 + f->x1) / 2.0;
    if (has_text(title)) svg_text(fp, mid_x, PAD, title, f->title_scale, "middle");
    if (has_text(xlabel)) svg_text(fp, mid_x, label_top + LINE_H + 8, xlabel, TEXT_SCALE, "middle");
    if (has_text(ylabel)) {
        fprintf(fp,
                "<text transform=\"translate(%d,%.1f) rotate(-90)\" font-size=\"18\" "
                "text-anchor=\"middle\">",
                ylabel_left(f) + CAP_H, (f->y0 + f->y1) / 2.0);
        svg_escape(fp, ylabel);
        fputs("</text>\n", fp);
    }
    fputs("</g>\n", fp);
    fprintf(fp,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" fill=\"none\" "
            "stroke=\"%s\" stroke-width=\"1\"/>\n",
            f->x0 - 0.5, f->y0 - 0.5, f->x1 - f->x0 + 1, f->y1 - f->y0 + 1,
            svg_colour(col, FRAME_INK));
}

// Writes series s as one <polyline> per unbroken run of finite points (a <circle> for a
// lone point), clipped to the plot area.
static void svg_series(FILE *fp, const LineLayout *L, const PlotSeries *s, Rgb rgb) {
    char col[8];
    fprintf(fp,
            "<g fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" stroke-linejoin=\"round\" "
            "stroke-linecap=\"round\" clip-path=\"url(#plot-area)\">\n",
            svg_colour(col, rgb), LINE_WIDTH);
    bool prev_ok = false, open = false;
    for (size_t i = 0; i < s->n; i++) {
        double x, y;
        bool ok = line_point(L, s, i, &x, &y);
        bool next_ok = i + 1 < s->n && isfinite(s->x[i + 1]) && isfinite(s->y[i + 1]);
        if (ok && L->markers)
            fprintf(fp, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.2f\" fill=\"%s\" stroke=\"none\"/>\n",
                    x, y, LINE_WIDTH + 1.5, col);
        if (ok && !prev_ok && !next_ok) {
            fprintf(fp, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.2f\" fill=\"%s\" stroke=\"none\"/>\n",
                    x, y, LINE_WIDTH, col);
        } else if (ok) {
            if (!open) fputs("<polyline points=\"", fp);
            fprintf(fp, "%s%.2f,%.2f", open ? " " : "", x, y);
            open = true;
            if (!next_ok) {
                fputs("\"/>\n", fp);
                open = false;
            }
        }
        prev_ok = ok;
    }
    fputs("</g>\n", fp);
}

// Writes the legend box: a swatch of each series' colour and its name.
static void svg_legend(FILE *fp, const LineLayout *L, const PlotSeries *s, int ns) {
    char col[8];
    fprintf(fp,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" fill=\"#ffffff\" "
            "stroke=\"%s\" stroke-width=\"1\"/>\n",
            L->lx - 0.5, L->ly - 0.5, L->lw + 1, L->lh + 1, svg_colour(col, LEGEND_EDGE));
    for (int k = 0; k < ns; k++) {
        char nb[32];
        int top = L->ly + LEGEND_PAD + k * LEGEND_ROW;
        double mid = top + CAP_H / 2.0;
        fprintf(fp,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" "
                "stroke-width=\"%.1f\" stroke-linecap=\"round\"/>\n",
                L->lx + LEGEND_PAD, mid, L->lx + LEGEND_PAD + LEGEND_SWATCH, mid,
                svg_colour(col, PALETTE[k % N_PALETTE]), LINE_WIDTH + 0.5);
        fprintf(fp, "<g fill=\"%s\">", svg_colour(col, INK));
        svg_text(fp, L->lx + LEGEND_PAD + LEGEND_SWATCH + 8, top,
                 series_name(&s[k], k, nb, sizeof nb), TEXT_SCALE, "start");
        fputs("</g>\n", fp);
    }
}

// Line chart as SVG (contract in plot.h).
int plot_svg_lines(const char *path, const char *title, const char *xlabel, const char *ylabel,
                   const PlotSeries *series, int n_series, const PlotOpts *opts, HpErr *err) {
    LineLayout L;
    if (line_layout(&L, path, title, xlabel, ylabel, series, n_series, opts, err) < 0) return -1;
    const Frame *f = &L.f;
    char *tmp;
    FILE *fp;
    if (atomic_open(path, &tmp, &fp, err) < 0) return -1;
    fprintf(fp,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans Mono, Menlo, Consolas, "
            "monospace\">\n"
            "<defs><clipPath id=\"plot-area\"><rect x=\"%d\" y=\"%d\" width=\"%d\" "
            "height=\"%d\"/></clipPath></defs>\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n",
            f->w, f->h, f->w, f->h, f->x0, f->y0, f->x1 - f->x0, f->y1 - f->y0);
    svg_axes(fp, f, title, xlabel, ylabel);
    for (int k = 0; k < n_series; k++) svg_series(fp, &L, &series[k], PALETTE[k % N_PALETTE]);
    if (L.legend) svg_legend(fp, &L, series, n_series);
    fputs("</svg>\n", fp);
    return atomic_commit(fp, tmp, path, err);
}

// ---------------------------------------------------------------------------------------
// Heat maps

typedef struct {
    Frame f;
    Axis cb;         // colour bar axis over [zlo, zhi]
    int bx0, bx1;    // colour bar columns [bx0, bx1), rows as the plot area
    double zlo, zhi; // values mapped to the ends of the ramp
} HeatLayout;

#define BAR_GAP 20
#define BAR_W 24

// Value at fractional sample position (gx, gy): bilinear between the four surrounding
// samples, or the nearest sample when one of them is not finite (NaN if that one is not).
static double heat_value(const double *z, size_t nx, size_t ny, double gx, double gy) {
    size_t i = gx <= 0 ? 0 : (size_t)gx >= nx - 1 ? nx - 2 : (size_t)gx;
    size_t j = gy <= 0 ? 0 : (size_t)gy >= ny - 1 ? ny - 2 : (size_t)gy;
    double fx = fmin(fmax(gx - (double)i, 0), 1), fy = fmin(fmax(gy - (double)j, 0), 1);
    double a = z[j * nx + i], b = z[j * nx + i + 1];
    double c = z[(j + 1) * nx + i], d = z[(j + 1) * nx + i + 1];
    if (isfinite(a) && isfinite(b) && isfinite(c) && isfinite(d))
        return (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d);
    double v = z[(j + (fy >= 0.5)) * nx + i + (fx >= 0.5)];
    return isfinite(v) ? v : NAN;
}

// Checks the heat map input and lays it out: plot area (kept near the data's aspect ratio),
// axes, colour bar and its ticks.
static int heat_layout(HeatLayout *H, const char *path, const char *title, const char *xlabel,
                       const char *ylabel, const double *z, size_t nx, size_t ny, double x0,
                       double x1, double y0, double y1, HpErr *err) {
    if (!path) return hp_fail(err, "plot: no output path");
    if (!z) return hp_fail(err, "%s: no heat map values", path);
    if (nx < 2 || ny < 2 || nx > ((size_t)1 << 24) / ny)
        return hp_fail(err, "%s: heat map grid %zu x %zu: need 2..2^24 samples, at least 2 each way",
                       path, nx, ny);
    if (!isfinite(x0) || !isfinite(x1) || !(x0 < x1) || !isfinite(y0) || !isfinite(y1) ||
        !(y0 < y1) || !isfinite(x1 - x0) || !isfinite(y1 - y0))
        return hp_fail(err, "%s: heat map extent x [%g, %g], y [%g, %g] must be finite and increasing",
                       path, x0, x1, y0, y1);
    memset(H, 0, sizeof *H);
    H->zlo = INFINITY;
    H->zhi = -INFINITY;
    for (size_t i = 0; i < nx * ny; i++) {
        if (!isfinite(z[i])) continue;
        H->zlo = fmin(H->zlo, z[i]);
        H->zhi = fmax(H->zhi, z[i]);
    }
    if (!(H->zlo <= H->zhi)) return hp_fail(err, "%s: heat map has no finite values", path);
    if (!isfinite(H->zhi - H->zlo)) return hp_fail(err, "%s: value range too large to plot", path);
    pad_range(&H->zlo, &H->zhi, false);
    Frame *f = &H->f;
    if (frame_size(f, path, 0, 0, HEAT_W, HEAT_H, err) < 0) return -1;
    f->title_scale = pick_title_scale(title, f->w);
    f->y0 = top_margin(title, f->title_scale);
    f->y1 = f->h - bottom_margin(xlabel);
    int plot_h = f->y1 - f->y0;
    axis_fit_linear(&f->y, y0, y1, plot_h, true, false);
    axis_fit_linear(&H->cb, H->zlo, H->zhi, plot_h, true, false);
    int left = left_margin(ylabel, &f->y);
    int right = BAR_GAP + BAR_W + 1 + TICK_LEN + 5 + axis_label_width(&H->cb) + PAD;
    int avail = f->w - left - right;
    if (avail < 40) return hp_fail(err, "%s: canvas too small for the heat map", path);
    int plot_w = avail;
    double want = plot_h * (x1 - x0) / (y1 - y0);  // same scale on both axes
    if (want >= plot_h / 3.0 && want < avail) plot_w = (int)lround(want);
    f->x0 = left + (avail - plot_w) / 2;
    f->x1 = f->x0 + plot_w;
    H->bx0 = f->x1 + BAR_GAP;
    H->bx1 = H->bx0 + BAR_W;
    axis_fit_linear(&f->x, x0, x1, plot_w, false, false);
    return 0;
}

// Contour band of value v: which interval between the colour bar's ticks it falls in.
static double heat_band(const HeatLayout *H, double v) {
    return floor((v - H->cb.tick[0]) / H->cb.step + 1e-9);
}

// Paints the interpolated values over the plot area, then light contour lines where the
// value crosses one of the colour bar's tick values. -1 (nothing drawn) if out of memory.
static int draw_heat_cells(Canvas *c, const HeatLayout *H, const double *z, size_t nx,
                           size_t ny, HpErr *err) {
    const Frame *f = &H->f;
    int pw = f->x1 - f->x0, ph = f->y1 - f->y0;
    double *val = hp_alloc((size_t)pw * (size_t)ph, sizeof *val, err);
    if (!val) return -1;
    for (int py = 0; py < ph; py++) {
        double gy = (ph - (py + 0.5)) / ph * (double)(ny - 1);
        for (int px = 0; px < pw; px++) {
            double gx = (px + 0.5) / pw * (double)(nx - 1);
            double v = heat_value(z, nx, ny, gx, gy);
            val[(size_t)py * pw + px] = v;
            Rgb col = isfinite(v) ? ramp_colour((v - H->zlo) / (H->zhi - H->zlo)) : MISSING;
            fill_rect(c, f->x0 + px, f->y0 + py, f->x0 + px + 1, f->y0 + py + 1, col);
        }
    }
    if (H->cb.n >= 1 && H->cb.step > 0) {
        for (int py = 0; py + 1 < ph; py++) {
            for (int px = 0; px + 1 < pw; px++) {
                double v = val[(size_t)py * pw + px];
                double r = val[(size_t)py * pw + px + 1], d = val[(size_t)(py + 1) * pw + px];
                if (!isfinite(v)) continue;
                double b = heat_band(H, v);
                if ((isfinite(r) && heat_band(H, r) != b) || (isfinite(d) && heat_band(H, d) != b))
                    blend(c, f->x0 + px, f->y0 + py, WHITE, 0.45);
            }
        }
    }
    free(val);
    return 0;
}

// Draws the colour bar beside the plot area with its frame, ticks and tick labels.
static void draw_colour_bar(Canvas *c, const HeatLayout *H) {
    const Frame *f = &H->f;
    int ph = f->y1 - f->y0;
    for (int py = 0; py < ph; py++)
        fill_rect(c, H->bx0, f->y0 + py, H->bx1, f->y0 + py + 1,
                  ramp_colour((ph - (py + 0.5)) / ph));
    frame_rect(c, H->bx0, f->y0, H->bx1, f->y1, 1, FRAME_INK);
    for (int i = 0; i < H->cb.n; i++) {
        int y = (int)floor(f->y1 - axis_frac(&H->cb, H->cb.tick[i]) * ph);
        fill_rect(c, H->bx1 + 1, y, H->bx1 + 1 + TICK_LEN, y + 1, FRAME_INK);
        draw_text(c, H->bx1 + 1 + TICK_LEN + 5, y - CAP_H / 2, H->cb.label[i], TEXT_SCALE,
                  ALIGN_LEFT, INK);
    }
}

// Heat map as PNG (contract in plot.h).
int plot_heatmap(const char *path, const char *title, const char *xlabel, const char *ylabel,
                 const double *z, size_t nx, size_t ny, double x0, double x1, double y0,
                 double y1, HpErr *err) {
    HeatLayout H;
    if (heat_layout(&H, path, title, xlabel, ylabel, z, nx, ny, x0, x1, y0, y1, err) < 0)
        return -1;
    Canvas c;
    if (canvas_init(&c, H.f.w, H.f.h, WHITE, err) < 0) return hp_prefix(err, path);
    if (draw_heat_cells(&c, &H, z, nx, ny, err) < 0) {
        canvas_free(&c);
        return hp_prefix(err, path);
    }
    draw_axes(&c, &H.f, title, xlabel, ylabel);
    draw_colour_bar(&c, &H);
    int rc = canvas_write_png(&c, path, err);
    canvas_free(&c);
    return rc;
}
