"""The built-in architectures of hprune written as ordinary PyTorch modules, independently of
hprune, with the same module paths (state_dict names) and layouts. Used by the benchmark
(torch_ref.py) and by the model-file checks (check_safetensors.py, torch_hessian_check.py)."""
import torch
from torch import nn


class LeNet5(nn.Module):
    def __init__(self, c, h, w, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(c, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        h2, w2 = (h // 2 - 4) // 2, (w // 2 - 4) // 2
        self.fc1 = nn.Linear(16 * h2 * w2, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(torch.relu(self.fc2(x)))


class VGG11(nn.Module):
    def __init__(self, c, h, w, classes):
        super().__init__()
        layers, size = [], min(h, w)
        for v in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
            if v == "M":
                if size >= 2:  # a pool is skipped once the map is 1x1
                    layers.append(nn.MaxPool2d(2, 2))
                    size //= 2
                continue
            layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU()]
            c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, classes)

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, depth, c, classes):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(c, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for s, planes in enumerate([16, 32, 64]):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(cin, planes, 2 if s > 0 and b == 0 else 1))
                cin = planes
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean((2, 3)))


def build(arch, c, h, w, classes):
    """The named architecture for inputs (c, h, w) and `classes` outputs; ValueError if unknown."""
    if arch == "lenet5":
        return LeNet5(c, h, w, classes)
    if arch == "vgg11":
        return VGG11(c, h, w, classes)
    if arch in ("resnet20", "resnet32", "resnet56"):
        return ResNet(int(arch[6:]), c, classes)
    raise ValueError(f"unknown architecture {arch!r} (known: lenet5, vgg11, resnet20, resnet32, resnet56)")
