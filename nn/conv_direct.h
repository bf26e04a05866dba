// conv_direct.h: stride-1 and stride-2 convolution of one sample straight from its zero-padded
// input, with no unfolding (internal to nn/conv.c).
//
// Output position q = h * Wp + w of the "wide" output (at stride 1, row stride Wp = Wi + 2 pad,
// the padded input's) reads the padded planes at q + ki * Wp + kj, so a tile of 16 * nv consecutive
// positions of DC_OB output channels is a sum of broadcast weights times contiguous loads: the
// GEMM micro-kernel of im2col without the im2col matrix or BLAS's packing of it. Positions with
// w >= Wo (and those past Ho * Wp) are computed and dropped when the tile is written out.
//
// The same kernel computes the forward pass and, with the weights transposed and flipped and
// padding k - 1 - pad, the input gradient w^T * dy (a transposed stride-1 convolution).
//
// A stride-2 forward pass reads the padded input split into its 4 phases (polyphase):
// P_ab[i][j] = padded[2i + a][2j + b], each a plane of row stride Wp = ceil((Wi + 2 pad) / 2).
// Output (oh, ow) sums the taps (ki, kj) of P_(ki%2)(kj%2) at (oh + ki/2, ow + kj/2), so each tap
// is again a contiguous run at q + (ki/2) Wp + kj/2 of one phase plane: the same tiles, with 9
// taps for a 3x3 kernel (no zero taps) and one phase for a 1x1 kernel (a projection shortcut).
//
// The weight gradient (direct_dw) is a reduction over the same wide positions: with AVX-512,
// tiles of 4 output channels times 6 taps (c, ki, kj) hold 24 vector accumulators, each 16
// positions loading 4 dy vectors and 6 input vectors, and a transpose-and-add tree turns 16
// accumulators at once into their 16 lane sums; on AVX2, 4 channels times 2 taps, 8 accumulators
// of 8 positions, each summed lane by lane.
#ifndef HP_CONV_DIRECT_H
#define HP_CONV_DIRECT_H

#include <stdbool.h>
#include <stddef.h>

#include "ops.h"

#define DC_OB 4  // output channels per tile

// One direct convolution: in (Ci, Hi, Wi) padded by pad, kernel k, stride 1 or 2, into out (Oo, Ho, Wo).
typedef struct {
    int Ci, Hi, Wi, pad, k, stride, Oo;
    int Ho, Wo;      // output plane
    int Wp;          // row stride of the planes read and of the wide output: Wi + 2 pad at stride 1,
                     // (Wi + 2 pad + 1) / 2 at stride 2
    int nph;         // phases per dimension: 2 at stride 2 with k > 1, else 1
    int Q;           // wide positions: Ho * Wp
    int Qr;          // Q rounded up to 16, the positions computed
    int Or;          // Oo rounded up to DC_OB, the output channels computed
    size_t phase;    // floats per (phase) plane, with the slack the last tiles read
    size_t plane;    // floats per input channel: nph * nph phase planes
} DirectConv;

// True when the weight gradient of g can run directly (direct_dw): as direct_bwd_ok at stride 1;
// at stride 2 whenever the forward can, with k <= 7 (the input gradient of a stride-2
// convolution stays on the unfolding).
bool direct_dw_ok(const ConvGeom *g);
// True when the forward pass of g can run directly (groups 1; stride 1 with kernel > 1, or stride
// 2; padding under 16; at least 32 wide positions: on smaller planes most of each 16-lane tile
// would be dropped).
bool direct_fwd_ok(const ConvGeom *g);
// True when the backward pass of g can run directly: as forward at stride 1, pad <= k - 1 (for
// the input gradient) and k <= 7 (the kernels are tested up to 7; direct_dw itself takes any k).
bool direct_bwd_ok(const ConvGeom *g);
// The forward convolution of g (x into y).
DirectConv direct_fwd(const ConvGeom *g);
// The input-gradient convolution of g (dy into dx), for a stride-1 g.
DirectConv direct_dx(const ConvGeom *g);

// Floats of packed weights: Or * Ci * k * k.
size_t direct_packed_len(const DirectConv *d);
// Floats of one padded input: Ci * plane.
size_t direct_padded_len(const DirectConv *d);
// Floats of the wide output scratch: the wide rows (Or, Qr), then the output map of direct_map.
size_t direct_wide_len(const DirectConv *d);
// Writes the output map into the wide scratch: per vector of 16 wide positions, the output index
// of its first position inside the output plane and the mask of those inside it. Before
// direct_run with mapped, whenever the scratch may hold another geometry's map.
void direct_map(const DirectConv *d, float *wide);

// Packs weights into tiles: packed[ob][ci][ki][kj][DC_OB], zero for channels >= Oo. Forward:
// w is (Oo, Ci, k, k); transposed: w is the forward weight (Ci, Oo, k, k), read as its
// transpose with the kernel flipped, as the input gradient needs.
void direct_pack(const DirectConv *d, const float *w, bool transposed, float *packed);
// Copies x (Ci, Hi, Wi) into padded (Ci planes of d->plane floats), zero border and slack; at
// stride 2 split into the phase planes P_ab, ab = a * nph + b, of d->phase floats each.
void direct_pad(const DirectConv *d, const float *x, float *padded);
// direct_pad into a padded buffer whose border and slack are zero already (an earlier direct_pad
// of the same geometry left them so): writes only the rows that come from x.
void direct_pad_inner(const DirectConv *d, const float *x, float *padded);
// out (Oo, Ho, Wo) = (acc: +=) sum over the n_src (1 or 2) sources of conv(padded[s], packed[s])
// [+ bias (Oo) if not NULL] [+ res (Oo, Ho, Wo) if not NULL], then max(., 0) if relu (neither
// res nor relu with acc); wide: scratch of direct_wide_len floats. mapped: direct_map(d, wide) has
// been called, so that without acc (and with AVX-512) each tile writes its output directly,
// epilogue applied, instead of through the wide rows.
void direct_run(const DirectConv *d, int n_src, const float *const *padded, const float *const *packed, float *wide,
                bool mapped, float *out, bool acc, const float *bias, const float *res, bool relu);
// Copies dy (Oo, Ho, Wo) into wide rows dy_wide (Or, Qr)
// (direct_wide_len floats), zero at the positions the wide layout drops and in the rows past Oo.
void direct_widen(const DirectConv *d, const float *dy, float *dy_wide);
// Samples direct_dw should reduce together: as many as fit in 1024 wide positions (at least 1,
// at most 16), so that the lane sums ending each reduction are a small part of the work while
// the input rows of a tile of taps over the chunk stay in the L1 cache for all output channels.
int direct_dw_chunk(const DirectConv *d);
// dw (Oo, Ci, k, k) += the weight gradient of n samples: dw[o][c][ki][kj] += sum over samples s
// and positions q of dy_wide_s[o][q] * padded_s[c][q + ki * Wp + kj] (at stride 2, of the tap's
// phase plane at q + (ki / 2) Wp + kj / 2, as the forward reads it), where
// padded_s (direct_pad of sample s's input) is at padded + s * direct_padded_len and dy_wide_s
// (direct_widen of its output gradient) at dy_wide + s * direct_wide_len. Each dw entry gets one
// addition per call, of a sum in a fixed order (per lane over samples and positions, then across
// lanes by halving).
void direct_dw(const DirectConv *d, int n, const float *padded, const float *dy_wide, float *dw);

#endif
