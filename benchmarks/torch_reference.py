"""Plain-PyTorch references: a torchvision-layout ResNet, and an eager SSKT training step.

* :class:`ResNet`: module names, parameter names and strides follow
  torchvision.models.resnet, so its state_dict has exactly the keys of the CSAIL
  Places365 and torchvision ImageNet checkpoints; the converter's tests compare
  against it. (torchvision itself has no CPU wheel for torch 2.13 here.)
* :class:`SSKTStep`: the original method's training step as the PyTorch code runs
  it (eager mode, CIFAR ResNet target, one transfer module per source, sources
  under ``no_grad`` on bilinearly upsampled images, CE + alpha * KD, SGD with
  momentum and weight decay). ``tools/benchmark.py --configs=torch_...`` times
  it next to the Keras implementation on the same machine.

Needs torch (``pip install -e ".[convert]"``).
"""

import torch
from torch import nn
from torch.nn import functional as F

LAYOUTS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, arch, num_classes):
        super().__init__()
        kind, blocks = LAYOUTS[arch]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, blocks[0])
        self.layer2 = self._make_layer(block, 128, blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 256, blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 512, blocks[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def random_resnet(arch, num_classes, seed=0):
    """A reference ResNet in eval mode with random weights *and* random BatchNorm statistics."""
    torch.manual_seed(seed)
    model = ResNet(arch, num_classes)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        model.fc.weight.mul_(20.0)  # logits of a few units, not a few hundredths
    return model.eval()


def save_like_csail(model, path, arch, legacy_format=True):
    """Saves ``model`` the way the CSAIL Places365 checkpoints were saved.

    A dict with ``epoch``, ``arch``, ``best_prec1`` and a ``state_dict`` whose keys
    carry ``DataParallel``'s ``module.`` prefix; by default in torch's pre-1.6
    (non-zip) serialization format, as those 2017 files are.
    """
    state = {f"module.{key}": value for key, value in model.state_dict().items()}
    checkpoint = {"epoch": 90, "arch": arch, "state_dict": state, "best_prec1": 54.65}
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy_format)


class CifarBasicBlock(nn.Module):
    """CIFAR ResNet block with the option-A (subsample and zero-pad) shortcut."""

    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.extra = planes - inplanes
        self.stride = stride

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.stride != 1 or self.extra:
            shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """CIFAR ResNet-``depth``; ``forward`` returns ``(logits, [stage outputs])``."""

    def __init__(self, depth, num_classes):
        super().__init__()
        blocks = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        stages, inplanes = [], 16
        for index, planes in enumerate((16, 32, 64)):
            layers = []
            for block in range(blocks):
                layers.append(CifarBasicBlock(inplanes, planes, 2 if index and not block else 1))
                inplanes = planes
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return self.fc(x.mean((2, 3))), features


def _conv_bn_relu(inplanes, planes, kernel_size, stride):
    return [
        nn.Conv2d(inplanes, planes, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(planes),
        nn.ReLU(),
    ]


class TransferModule(nn.Module):
    """One bottleneck branch per stage, pooled, averaged and classified (as :class:`sskt_tf.TransferModule`)."""

    def __init__(self, stage_channels, num_classes):
        super().__init__()
        width = stage_channels[-1]
        self.branches = nn.ModuleList(
            nn.Sequential(
                *_conv_bn_relu(c, width // 2, 1, 1),
                *_conv_bn_relu(width // 2, width // 2, 3, 2),
                *_conv_bn_relu(width // 2, width, 1, 1),
            )
            for c in stage_channels
        )
        self.fc = nn.Linear(width, num_classes)

    def forward(self, features):
        pooled = [branch(f).mean((2, 3)) for branch, f in zip(self.branches, features)]
        return self.fc(torch.stack(pooled).mean(0))


class SSKTStep:
    """The original method's training step, eager PyTorch, for timing.

    Args:
        depth: CIFAR ResNet depth of the target.
        num_classes: target classes.
        sources: ``[(arch, classes)]`` of torchvision-layout ResNet sources
            (random weights: only the speed matters).
        source_size: side length the sources see (bilinear upsampling).
        alpha: weight of the KD terms.
        temperature: KD temperature.
    """

    def __init__(self, depth=20, num_classes=10, sources=(), source_size=74, alpha=0.1, temperature=3.0):
        self.target = CifarResNet(depth, num_classes).train()
        self.sources = [ResNet(arch, classes).eval() for arch, classes in sources]
        for source in self.sources:
            source.requires_grad_(False)
        self.heads = nn.ModuleList(TransferModule((16, 32, 64), classes) for _, classes in sources).train()
        parameters = list(self.target.parameters()) + list(self.heads.parameters())
        self.optimizer = torch.optim.SGD(parameters, lr=0.1, momentum=0.9, weight_decay=5e-4)
        self.source_size = source_size
        self.alpha = alpha
        self.temperature = temperature

    def __call__(self, images, labels):
        """One step on ``images`` (``[N, 3, H, W]``, normalised) and ``labels``; returns the loss."""
        t = self.temperature
        with torch.no_grad():
            upsampled = (
                F.interpolate(images, size=(self.source_size, self.source_size), mode="bilinear", align_corners=False)
                if self.sources
                else None
            )
            soft = [source(upsampled) for source in self.sources]
        logits, features = self.target(images)
        loss = F.cross_entropy(logits, labels)
        for head, source_logits in zip(self.heads, soft):
            kd = F.kl_div(F.log_softmax(head(features) / t, 1), F.softmax(source_logits / t, 1), reduction="batchmean")
            loss = loss + self.alpha * t * t * kd
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()
