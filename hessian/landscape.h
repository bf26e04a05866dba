// landscape.h: the loss along directions in parameter space (the top eigenvectors).
#ifndef HP_LANDSCAPE_H
#define HP_LANDSCAPE_H

#include "hvp.h"

// loss[i] = L(θ + a_i d) for a_i = -radius + 2 radius i / (n - 1), i < n (n >= 2, radius > 0);
// alpha gets the a_i. The model's parameters are restored afterwards.
int landscape_1d(Curvature *c, const float *d, double radius, int n, double *alpha, double *loss, ProgressFn progress,
                 void *user, HpErr *err);
// loss[j * n + i] = L(θ + a_i d1 + a_j d2) on the same grid of a in both directions.
int landscape_2d(Curvature *c, const float *d1, const float *d2, double radius, int n, double *loss,
                 ProgressFn progress, void *user, HpErr *err);

#endif
