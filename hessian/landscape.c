// landscape.c: loss evaluations on a line or a plane through the current parameters.
#include <stdlib.h>
#include <string.h>

#include "landscape.h"

// Grid coordinate i of n over [-radius, radius].
static double grid_at(double radius, int n, int i) { return -radius + 2.0 * radius * i / (n - 1); }

// Checks the grid arguments.
static int check_grid(double radius, int n, HpErr *err) {
    if (n < 2) return hp_fail(err, "landscape: %d points; need at least 2", n);
    if (!(radius > 0)) return hp_fail(err, "landscape: radius %g must be > 0", radius);
    return 0;
}

// Sets the parameters to theta + a d1 + b d2 (d2 may be NULL).
static void move_to(Model *m, const float *theta, const float *d1, double a, const float *d2, double b) {
    float fa = (float)a, fb = (float)b;
    for (size_t j = 0; j < m->n_params; j++) m->params[j] = theta[j] + fa * d1[j] + (d2 ? fb * d2[j] : 0.0f);
}

int landscape_1d(Curvature *c, const float *d, double radius, int n, double *alpha, double *loss, ProgressFn progress,
                 void *user, HpErr *err) {
    if (check_grid(radius, n, err)) return -1;
    Model *m = c->m;
    float *theta = hp_alloc(m->n_params, sizeof(float), err);
    if (!theta) return hp_prefix(err, "landscape");
    memcpy(theta, m->params, m->n_params * sizeof(float));
    for (int i = 0; i < n; i++) {
        alpha[i] = grid_at(radius, n, i);
        move_to(m, theta, d, alpha[i], NULL, 0.0);
        loss[i] = curv_loss_grad(c, NULL);
        if (progress) progress(i + 1, n, "loss evaluations", user);
    }
    memcpy(m->params, theta, m->n_params * sizeof(float));
    free(theta);
    curv_invalidate(c);
    return 0;
}

int landscape_2d(Curvature *c, const float *d1, const float *d2, double radius, int n, double *loss,
                 ProgressFn progress, void *user, HpErr *err) {
    if (check_grid(radius, n, err)) return -1;
    Model *m = c->m;
    float *theta = hp_alloc(m->n_params, sizeof(float), err);
    if (!theta) return hp_prefix(err, "landscape");
    memcpy(theta, m->params, m->n_params * sizeof(float));
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < n; i++) {
            move_to(m, theta, d1, grid_at(radius, n, i), d2, grid_at(radius, n, j));
            loss[(size_t)j * n + i] = curv_loss_grad(c, NULL);
            if (progress) progress((long)j * n + i + 1, (long)n * n, "loss evaluations", user);
        }
    }
    memcpy(m->params, theta, m->n_params * sizeof(float));
    free(theta);
    curv_invalidate(c);
    return 0;
}
