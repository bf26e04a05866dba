// arch.c: the built-in architectures, named as PyTorch's state_dict would name them.
#include <stdio.h>
#include <string.h>

#include "nn.h"

static const char *const ARCH_NAMES[] = {"lenet5", "vgg11", "resnet20", "resnet32", "resnet56", NULL};

const char *const *arch_names(void) { return ARCH_NAMES; }

// Every builder below threads the last node id through; a negative id means err is set.
#define TRY(expr)                \
    do {                         \
        if ((x = (expr)) < 0) return -1; \
    } while (0)

// LeNet-5 with ReLU and max pooling: conv(6,5x5,pad 2) pool conv(16,5x5) pool fc120 fc84 fc.
static int build_lenet5(Model *m, HpErr *err) {
    int x;
    TRY(mb_input(m, err));
    TRY(mb_conv(m, "conv1", x, 6, 5, 1, 2, 1, true, err));
    TRY(mb_relu(m, "relu1", x, err));
    TRY(mb_maxpool(m, "pool1", x, 2, 2, 0, err));
    TRY(mb_conv(m, "conv2", x, 16, 5, 1, 0, 1, true, err));
    TRY(mb_relu(m, "relu2", x, err));
    TRY(mb_maxpool(m, "pool2", x, 2, 2, 0, err));
    TRY(mb_flatten(m, "flatten", x, err));
    TRY(mb_linear(m, "fc1", x, 120, true, err));
    TRY(mb_relu(m, "relu3", x, err));
    TRY(mb_linear(m, "fc2", x, 84, true, err));
    TRY(mb_relu(m, "relu4", x, err));
    TRY(mb_linear(m, "fc3", x, m->n_classes, true, err));
    return 0;
}

// VGG-11 with BatchNorm, CIFAR-size: torchvision's "features.i" numbering, a pool skipped once
// the map is 1x1 (so small inputs work), global average pool, one linear "classifier".
static int build_vgg11(Model *m, HpErr *err) {
    static const int cfg[] = {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
    int x, idx = 0;
    char name[HP_MAX_NAME];
    TRY(mb_input(m, err));
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        if (cfg[i] == 0) {
            if (m->nodes[x].out.h < 2 || m->nodes[x].out.w < 2) continue;
            snprintf(name, sizeof name, "features.%d", idx++);
            TRY(mb_maxpool(m, name, x, 2, 2, 0, err));
            continue;
        }
        snprintf(name, sizeof name, "features.%d", idx++);
        TRY(mb_conv(m, name, x, cfg[i], 3, 1, 1, 1, false, err));
        snprintf(name, sizeof name, "features.%d", idx++);
        TRY(mb_bn(m, name, x, err));
        snprintf(name, sizeof name, "features.%d", idx++);
        TRY(mb_relu(m, name, x, err));
    }
    TRY(mb_gap(m, "avgpool", x, err));
    TRY(mb_flatten(m, "flatten", x, err));
    TRY(mb_linear(m, "classifier", x, m->n_classes, true, err));
    return 0;
}

// One CIFAR ResNet basic block: conv-bn-relu-conv-bn plus identity or a 1x1 conv-bn
// projection ("shortcut.0", "shortcut.1") where the shape changes, then add and relu.
static int basic_block(Model *m, const char prefix[32], int x_in, int planes, int stride, HpErr *err) {
    int x;
    char n[2 * HP_MAX_NAME];  // prefix is short ("layer3.8"); names fit HP_MAX_NAME
#define NAME(suffix) (snprintf(n, sizeof n, "%s.%s", prefix, suffix), n)
    TRY(mb_conv(m, NAME("conv1"), x_in, planes, 3, stride, 1, 1, false, err));
    TRY(mb_bn(m, NAME("bn1"), x, err));
    TRY(mb_relu(m, NAME("relu1"), x, err));
    TRY(mb_conv(m, NAME("conv2"), x, planes, 3, 1, 1, 1, false, err));
    TRY(mb_bn(m, NAME("bn2"), x, err));
    int main_path = x, short_path = x_in;
    if (stride != 1 || m->nodes[x_in].out.c != planes) {
        TRY(mb_conv(m, NAME("shortcut.0"), x_in, planes, 1, stride, 0, 1, false, err));
        TRY(mb_bn(m, NAME("shortcut.1"), x, err));
        short_path = x;
    }
    TRY(mb_add(m, NAME("add"), main_path, short_path, err));
    TRY(mb_relu(m, NAME("relu2"), x, err));
#undef NAME
    return x;
}

// CIFAR-style ResNet of the given depth (6n+2): stages of 16, 32, 64 channels.
static int build_resnet(Model *m, int depth, HpErr *err) {
    int x, blocks = (depth - 2) / 6;
    TRY(mb_input(m, err));
    TRY(mb_conv(m, "conv1", x, 16, 3, 1, 1, 1, false, err));
    TRY(mb_bn(m, "bn1", x, err));
    TRY(mb_relu(m, "relu", x, err));
    static const int planes[3] = {16, 32, 64};
    for (int s = 0; s < 3; s++) {
        for (int b = 0; b < blocks; b++) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "layer%d.%d", s + 1, b);
            TRY(basic_block(m, prefix, x, planes[s], (s > 0 && b == 0) ? 2 : 1, err));
        }
    }
    TRY(mb_gap(m, "avgpool", x, err));
    TRY(mb_flatten(m, "flatten", x, err));
    TRY(mb_linear(m, "fc", x, m->n_classes, true, err));
    return 0;
}
#undef TRY

int arch_layout(Model *m, const char *arch, Shape input, int n_classes, HpErr *err) {
    if (input.c < 1 || input.c > HP_MAX_CHANNELS_IN || input.h < 1 || input.w < 1 || n_classes < 2)
        return hp_fail(err, "bad input shape %dx%dx%d or class count %d", input.c, input.h, input.w, n_classes);
    model_init(m, input, n_classes);
    int rc;
    if (strcmp(arch, "lenet5") == 0)
        rc = build_lenet5(m, err);
    else if (strcmp(arch, "vgg11") == 0)
        rc = build_vgg11(m, err);
    else if (strcmp(arch, "resnet20") == 0)
        rc = build_resnet(m, 20, err);
    else if (strcmp(arch, "resnet32") == 0)
        rc = build_resnet(m, 32, err);
    else if (strcmp(arch, "resnet56") == 0)
        rc = build_resnet(m, 56, err);
    else
        rc = hp_fail(err, "unknown architecture '%s' (known: lenet5, vgg11, resnet20, resnet32, resnet56)", arch);
    if (rc < 0 || model_layout(m, err) < 0) {
        model_free(m);
        return -1;
    }
    snprintf(m->arch, sizeof m->arch, "%s", arch);
    return 0;
}

int arch_build(Model *m, const char *arch, Shape input, int n_classes, HpErr *err) {
    if (arch_layout(m, arch, input, n_classes, err) < 0) return -1;
    if (model_alloc(m, err) < 0) {
        model_free(m);
        return -1;
    }
    return 0;
}
