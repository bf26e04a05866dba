// conv_winograd.h: the 3x3, stride-1, pad-1 convolution of one sample by Winograd's minimal
// filtering F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
// 2016), for inference (internal to nn/conv.c). Its results differ from the direct kernel's by
// rounding (a few units in the last place, relative to the output's scale), so the training and
// curvature passes, whose derivatives are checked against each other, keep the direct kernel.
//
// Each 2x2 block of outputs (a tile) comes from the 4x4 patch of the padded input under it:
//   Y = A^T [ sum_c (G g_c G^T) * (B^T d_c B) ] A   (* elementwise),
// 16 multiplies per input channel and tile instead of 36. The patches of neighbouring tiles
// start 2 columns (and rows) apart, so the padded input is split into its four phases as for a
// stride-2 convolution (direct_pad): entry (r, s) of the patch of tile (i, j) is
// P_(r%2)(s%2)[i + r/2][j + s/2], and the entries of 16 tiles along a row are one contiguous run.
// Tiles are numbered t = i * Wp + j, Wp the phase planes' row stride (the direct kernel's
// "wide" layout): tiles with j >= Tw are computed and dropped.
//
// Per sample: V[xi][c][t] = (B^T d_c B)[xi] for every channel and tile; then for each block of
// 4 output channels and up to 96 tiles (16 on AVX2), M[xi] = sum_c U[xi][k][c] V[xi][c][t] (16 small GEMMs,
// as the direct kernel's broadcast-and-multiply-add tiles), turned at once into the tiles'
// outputs Yw[k][a][b][t] = (A^T M A)[a][b]; a last pass interleaves them into the output rows
// with the bias, the residual and the ReLU.
#ifndef HP_CONV_WINOGRAD_H
#define HP_CONV_WINOGRAD_H

#include <stdbool.h>
#include <stddef.h>

#include "conv_direct.h"
#include "ops.h"

// One Winograd convolution: in (C, H, W), 3x3 kernel, pad 1, into out (K, H, W).
typedef struct {
    int C, H, W, K;
    int Th, Tw;        // tiles: (H + 1) / 2 rows, (W + 1) / 2 columns
    int Kr;            // K rounded up to 4, the output channels computed
    DirectConv phases; // the stride-2 geometry whose padded phase planes the patches are read from
                       // (its Wp is the tiles' row stride, its Qr the tiles computed)
} Wino;

// True when Winograd can compute g: 3x3, stride 1, pad 1, groups 1 and direct_fwd_ok(g).
bool wino_fits(const ConvGeom *g);
// True when g runs faster by Winograd than by the direct kernel on this machine, which
// conv2d_infer then uses. With AVX-512: wino_fits(g), and 16 products per tile over the tiles
// computed (times 1.75 for the transforms) fewer than 9 per position over the direct kernel's
// wide positions; on 28x28 and 14x14 planes it is, on 7x7 (the 16 tiles of 49 outputs take 32
// lanes) it is not. Without AVX-512 never: there the direct kernel was the faster on most of
// ResNet-20's layers, and on the whole network (conv_winograd.c).
bool wino_ok(const ConvGeom *g);
Wino wino_make(const ConvGeom *g);

// Floats of the transformed weights: 16 * Kr * C.
size_t wino_packed_len(const Wino *w);
// Floats of one sample's work area: the padded phase planes, V, the outputs Yw and a tile's M.
size_t wino_work_len(const Wino *w);

// U[xi][k / 4][c][k % 4] = (G g_kc G^T)[xi] for the weights g (K, C, 3, 3); zero for k >= K.
void wino_pack(const Wino *w, const float *g, float *packed);

// out (K, H, W) = conv(x (C, H, W), the packed weights) [+ bias (K) if not NULL] [+ res (K, H, W)
// if not NULL], then max(., 0) if relu. work: wino_work_len floats.
void wino_run(const Wino *w, const float *x, const float *packed, float *work, float *out, const float *bias,
              const float *res, bool relu);

#endif
