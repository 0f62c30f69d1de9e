"""Plain-PyTorch reference of Hara et al.'s 3D ResNet, in the layout of their checkpoints.

Module and parameter names follow ``models/resnet.py`` of kenshohara/3D-ResNets-PyTorch
(``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ``fc``), so the
state dict has exactly the keys of ``resnet-18-kinetics.pth``; the converter's
tests compare the Keras network against it, and the benchmark times its eager
training step. Input: mean-subtracted clips ``[batch, 3, T, H, W]``.

Needs torch (``pip install -e ".[convert]"``).
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

BLOCKS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def _zero_pad_shortcut(x, planes, stride):
    """Shortcut A: strided subsampling, then zero channels appended after the input's."""
    out = F.avg_pool3d(x, kernel_size=1, stride=stride)
    zeros = out.new_zeros(out.size(0), planes - out.size(1), *out.shape[2:])
    return torch.cat([out, zeros], dim=1)


class BasicBlock3D(nn.Module):
    def __init__(self, inplanes, planes, stride, shortcut):
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.planes, self.stride, self.shortcut = planes, stride, None
        if stride != 1 or inplanes != planes:
            if shortcut == "A":
                self.shortcut = "A"
            else:
                self.downsample = nn.Sequential(
                    nn.Conv3d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm3d(planes)
                )
                self.shortcut = "B"

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut == "A":
            x = _zero_pad_shortcut(x, self.planes, self.stride)
        elif self.shortcut == "B":
            x = self.downsample(x)
        return self.relu(out + x)


class ResNet3D(nn.Module):
    """Hara's 3D ResNet with BasicBlocks; ``features(x)`` also returns the four stage outputs."""

    def __init__(self, depth, num_classes, shortcut="A", widths=(64, 128, 256, 512)):
        super().__init__()
        self.conv1 = nn.Conv3d(3, widths[0], 7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        inplanes = widths[0]
        for stage, (blocks, planes) in enumerate(zip(BLOCKS[depth], widths), start=1):
            layers = []
            for index in range(blocks):
                stride = 2 if stage > 1 and index == 0 else 1
                layers.append(BasicBlock3D(inplanes, planes, stride, shortcut))
                inplanes = planes
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        stages = []
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
            stages.append(x)
        return stages

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.features(x)[-1]), 1))


def random_resnet3d(depth, num_classes, shortcut="A", seed=0):
    """A reference 3D ResNet in eval mode with random weights and BatchNorm statistics of real scale.

    The network takes mean-subtracted pixels (about +-128), so random running
    statistics near (0, 1) would give logits in the thousands. Instead, one
    training-mode pass over random clips sets every BatchNorm's running mean and
    variance to that batch's (as a trained network's match its data), and the
    BatchNorm scales and offsets are random.
    """
    torch.manual_seed(seed)
    model = ResNet3D(depth, num_classes, shortcut)
    batch_norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm3d)]
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv3d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.kernel_size[2] * module.out_channels
                module.weight.normal_(0, math.sqrt(2.0 / fan_out))
        for module in batch_norms:
            module.momentum = 1.0  # running statistics := this batch's
        model.train()(torch.rand(4, 3, 16, 64, 64) * 255.0 - 110.0)
        for module in batch_norms:
            module.momentum = 0.1
            module.weight.uniform_(0.5, 1.5)
            module.bias.uniform_(-0.2, 0.2)
        model.fc.weight.mul_(20.0)  # logits of a few units, not a few hundredths
    return model.eval()


def save_like_hara(model, path, arch="resnet-18", legacy_format=True):
    """Saves ``model`` the way ``resnet-18-kinetics.pth`` was saved.

    A dict with ``epoch``, ``arch``, a ``state_dict`` whose keys carry
    ``DataParallel``'s ``module.`` prefix, and the SGD optimizer's state; in
    torch's pre-1.6 (non-zip) format by default, as the 2017 files are.
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    state = {f"module.{key}": value for key, value in model.state_dict().items()}
    checkpoint = {"epoch": 200, "arch": arch, "state_dict": state, "optimizer": optimizer.state_dict()}
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy_format)


def _conv_bn_relu_3d(inplanes, planes, kernel_size, stride):
    return [
        nn.Conv3d(inplanes, planes, kernel_size, stride=stride, padding=kernel_size // 2),
        nn.BatchNorm3d(planes),
        nn.ReLU(),
    ]


class TransferModule3D(nn.Module):
    """The original's 3D transfer module: per stage 1x1x1 to 500, 3x3x3 stride 2, 1x1x1 to 1000; pooled, averaged."""

    def __init__(self, stage_channels, num_classes, width=1000):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                *_conv_bn_relu_3d(c, width // 2, 1, 1),
                *_conv_bn_relu_3d(width // 2, width // 2, 3, 2),
                *_conv_bn_relu_3d(width // 2, width, 1, 1),
            )
            for c in stage_channels
        )
        self.fc = nn.Linear(width, num_classes)

    def forward(self, features):
        pooled = [branch(f).mean((2, 3, 4)) for branch, f in zip(self.branches, features)]
        return self.fc(torch.stack(pooled).mean(0))


class VideoSSKTStep:
    """The original video training step (3D_SSKT), eager PyTorch, for timing.

    A 3D ResNet-18 target on clips; 2D ResNet-50 sources on each clip's centre
    frame, upsampled to ``source_size``, under ``no_grad`` in eval mode; one 3D
    transfer module per source; CE + soft cross-entropy per source (alpha=1,
    T=1); SGD lr 0.01, momentum 0.9, dampening 0.9, weight decay 1e-3 (the original's).

    Args:
        num_classes: target classes.
        sources: ``[(arch, classes)]`` of torchvision-layout ResNet sources (random weights).
        source_size: side the sources see.
    """

    def __init__(self, num_classes=101, sources=(), source_size=224):
        from torch_reference import ResNet

        self.target = ResNet3D(18, num_classes).train()
        self.sources = [ResNet(arch, classes).eval() for arch, classes in sources]
        for source in self.sources:
            source.requires_grad_(False)
        self.heads = nn.ModuleList(TransferModule3D((64, 128, 256, 512), classes) for _, classes in sources).train()
        parameters = list(self.target.parameters()) + list(self.heads.parameters())
        self.optimizer = torch.optim.SGD(parameters, lr=0.01, momentum=0.9, dampening=0.9, weight_decay=1e-3)
        self.source_size = source_size

    def __call__(self, clips, labels):
        """One step on ``clips`` (``[N, 3, T, H, W]``, mean-subtracted) and ``labels``; returns the loss."""
        with torch.no_grad():
            frames = clips[:, :, clips.shape[2] // 2]
            if self.sources:
                frames = F.interpolate(frames, size=(self.source_size,) * 2, mode="bilinear", align_corners=False)
            soft = [F.softmax(source(frames), 1) for source in self.sources]
        stages = self.target.features(clips)
        logits = self.target.fc(torch.flatten(self.target.avgpool(stages[-1]), 1))
        loss = F.cross_entropy(logits, labels)
        for head, target_probabilities in zip(self.heads, soft):
            loss = loss + torch.sum(-target_probabilities * F.log_softmax(head(stages), 1), 1).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()
