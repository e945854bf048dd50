"""The reference's networks (CSAIL semantic-segmentation-pytorch, mit_semseg/models) as plain
PyTorch modules, written for the benchmark: the same layers, shapes and state-dict keys, with
torch.nn.BatchNorm2d where the reference has its SynchronizedBatchNorm2d (on one device the
reference's SyncBN is F.batch_norm). Only what the benchmark's five models need: deep-stem
ResNet-18/50 (plain and dilated), MobileNetV2 (dilated), HRNetV2-W48, and the C1, PPM and
UPerNet decoders with and without deep supervision.

Inference follows the reference's SegmentationModule: logits bilinearly upsampled
(align_corners=False) to segSize, then softmax over classes. Training: log_softmax, NLLLoss
(ignore_index=-1), plus 0.4 x the deep-supervision loss. Under torch.autocast (the benchmark's
bf16 baseline) the logits come out in bfloat16; the head casts them to float32 first, as
PyTorch's AMP recipe does for the loss (a no-op in float32).
"""
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

BatchNorm2d = nn.BatchNorm2d


def interpolate(x, size):
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False)


# --------------------------------------------------------------------------- ResNet (resnet.py)

def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, bn_momentum=0.1):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = BatchNorm2d(planes, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = BatchNorm2d(planes, momentum=bn_momentum)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += residual
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, bn_momentum=0.1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = BatchNorm2d(planes, momentum=bn_momentum)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = BatchNorm2d(planes, momentum=bn_momentum)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = BatchNorm2d(planes * 4, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += residual
        return self.relu(out)


def make_layer(block, inplanes, planes, blocks, stride=1, bn_momentum=0.1):
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
            BatchNorm2d(planes * block.expansion, momentum=bn_momentum),
        )
    layers = [block(inplanes, planes, stride, downsample, bn_momentum)]
    for _ in range(1, blocks):
        layers.append(block(planes * block.expansion, planes, bn_momentum=bn_momentum))
    return nn.Sequential(*layers)


def nostride_dilate(m, dilate):
    """ResnetDilated._nostride_dilate: stride-2 convs become stride 1, 3x3 convs dilate."""
    if isinstance(m, nn.Conv2d):
        if m.stride == (2, 2):
            m.stride = (1, 1)
            if m.kernel_size == (3, 3):
                m.dilation = (dilate // 2, dilate // 2)
                m.padding = (dilate // 2, dilate // 2)
        elif m.kernel_size == (3, 3):
            m.dilation = (dilate, dilate)
            m.padding = (dilate, dilate)


class ResnetEncoder(nn.Module):
    """Deep-stem ResNet without avgpool/fc (models.Resnet / ResnetDilated): conv_out = layer1..4."""

    def __init__(self, block, layers, dilate_scale=0):
        super().__init__()
        self.conv1 = conv3x3(3, 64, stride=2)
        self.bn1 = BatchNorm2d(64)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(64, 64)
        self.bn2 = BatchNorm2d(64)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = conv3x3(64, 128)
        self.bn3 = BatchNorm2d(128)
        self.relu3 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = make_layer(block, 128, 64, layers[0])
        self.layer2 = make_layer(block, 64 * block.expansion, 128, layers[1], stride=2)
        self.layer3 = make_layer(block, 128 * block.expansion, 256, layers[2], stride=2)
        self.layer4 = make_layer(block, 256 * block.expansion, 512, layers[3], stride=2)
        if dilate_scale == 8:
            self.layer3.apply(partial(nostride_dilate, dilate=2))
            self.layer4.apply(partial(nostride_dilate, dilate=4))
        elif dilate_scale == 16:
            self.layer4.apply(partial(nostride_dilate, dilate=2))

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.maxpool(x)
        conv_out = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            conv_out.append(x)
        return conv_out


# --------------------------------------------------------------------- MobileNetV2 (mobilenet.py)

class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:  # pw
            layers += [nn.Conv2d(inp, hidden, 1, 1, 0, bias=False), BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [  # dw, pw-linear
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2Dilated(nn.Module):
    """MobileNetV2 features[:-1] with dilate_scale 8; conv_out after features 2, 4, 7, 14 and the last."""

    def __init__(self, dilate_scale=8):
        super().__init__()
        features = [nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), BatchNorm2d(32), nn.ReLU6(inplace=True))]
        channels = 32
        for t, c, n, s in [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                           [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]:
            for i in range(n):
                features.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                channels = c
        self.features = nn.Sequential(*features)  # the 1x1 conv to 1280 (features[-1]) is dropped
        self.down_idx = [2, 4, 7, 14]
        total = len(self.features)
        if dilate_scale == 8:
            for i in range(self.down_idx[-2], self.down_idx[-1]):
                self.features[i].apply(partial(nostride_dilate, dilate=2))
            for i in range(self.down_idx[-1], total):
                self.features[i].apply(partial(nostride_dilate, dilate=4))

    def forward(self, x):
        conv_out = []
        for i, f in enumerate(self.features):
            x = f(x)
            if i in self.down_idx:
                conv_out.append(x)
        conv_out.append(x)
        return conv_out


# ---------------------------------------------------------------------- HRNetV2-W48 (hrnet.py)

HRNET_BN_MOMENTUM = 0.1


class HighResolutionModule(nn.Module):
    def __init__(self, channels, num_blocks=4):
        super().__init__()
        n = len(channels)
        self.n = n
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, c, bn_momentum=HRNET_BN_MOMENTUM) for _ in range(num_blocks)])
            for c in channels)
        fuse_layers = []
        for i in range(n):
            row = []
            for j in range(n):
                if j > i:
                    row.append(nn.Sequential(nn.Conv2d(channels[j], channels[i], 1, 1, 0, bias=False),
                                             BatchNorm2d(channels[i], momentum=HRNET_BN_MOMENTUM)))
                elif j == i:
                    row.append(None)
                else:
                    convs = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        out = channels[i] if last else channels[j]
                        seq = [nn.Conv2d(channels[j], out, 3, 2, 1, bias=False), BatchNorm2d(out, momentum=HRNET_BN_MOMENTUM)]
                        if not last:
                            seq.append(nn.ReLU(inplace=True))
                        convs.append(nn.Sequential(*seq))
                    row.append(nn.Sequential(*convs))
            fuse_layers.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse_layers)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        for i in range(self.n):
            x[i] = self.branches[i](x[i])
        out = []
        for i in range(self.n):
            y = x[0] if i == 0 else self.fuse_layers[i][0](x[0])
            for j in range(1, self.n):
                if i == j:
                    y = y + x[j]
                elif j > i:
                    y = y + interpolate(self.fuse_layers[i][j](x[j]), x[i].shape[-2:])
                else:
                    y = y + self.fuse_layers[i][j](x[j])
            out.append(self.relu(y))
        return out


class HRNetV2(nn.Module):
    def __init__(self):
        super().__init__()
        m = HRNET_BN_MOMENTUM
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = BatchNorm2d(64, momentum=m)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = BatchNorm2d(64, momentum=m)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_layer(Bottleneck, 64, 64, 4, bn_momentum=m)
        widths = [48, 96, 192, 384]
        previous = [256]
        for stage, modules in zip((2, 3, 4), (1, 4, 3)):
            current = widths[:stage]
            setattr(self, f'transition{stage - 1}', self._transition(previous, current))
            setattr(self, f'stage{stage}', nn.Sequential(*[HighResolutionModule(current) for _ in range(modules)]))
            previous = current

    @staticmethod
    def _transition(pre, cur):
        layers = []
        for i in range(len(cur)):
            if i < len(pre):
                if cur[i] != pre[i]:
                    layers.append(nn.Sequential(nn.Conv2d(pre[i], cur[i], 3, 1, 1, bias=False),
                                                BatchNorm2d(cur[i], momentum=HRNET_BN_MOMENTUM), nn.ReLU(inplace=True)))
                else:
                    layers.append(None)
            else:
                convs = []
                for j in range(i + 1 - len(pre)):
                    out = cur[i] if j == i - len(pre) else pre[-1]
                    convs.append(nn.Sequential(nn.Conv2d(pre[-1], out, 3, 2, 1, bias=False),
                                               BatchNorm2d(out, momentum=HRNET_BN_MOMENTUM), nn.ReLU(inplace=True)))
                layers.append(nn.Sequential(*convs))
        return nn.ModuleList(layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        y_list = [x]
        for stage in (2, 3, 4):
            transition = getattr(self, f'transition{stage - 1}')
            x_list = []
            for i, t in enumerate(transition):
                if t is None:
                    x_list.append(y_list[i])
                else:
                    # stage 2 transitions read layer1's output; later ones only exist for new
                    # branches and read the last branch (the reference's y_list[-1]).
                    x_list.append(t(y_list[-1]))
            y_list = getattr(self, f'stage{stage}')(x_list)
        size = y_list[0].shape[-2:]
        x = torch.cat([y_list[0]] + [interpolate(y, size) for y in y_list[1:]], 1)
        return [x]


# -------------------------------------------------------------------- decoders (models.py)

def conv3x3_bn_relu(in_planes, out_planes, stride=1):
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False),
                         BatchNorm2d(out_planes), nn.ReLU(inplace=True))


class C1(nn.Module):
    def __init__(self, num_class, fc_dim, deepsup):
        super().__init__()
        self.deepsup = deepsup
        self.cbr = conv3x3_bn_relu(fc_dim, fc_dim // 4)
        if deepsup:
            self.cbr_deepsup = conv3x3_bn_relu(fc_dim // 2, fc_dim // 4)
        self.conv_last = nn.Conv2d(fc_dim // 4, num_class, 1, 1, 0)
        if deepsup:
            self.conv_last_deepsup = nn.Conv2d(fc_dim // 4, num_class, 1, 1, 0)

    def forward(self, conv_out, with_deepsup):
        x = self.conv_last(self.cbr(conv_out[-1]))
        if not (self.deepsup and with_deepsup):
            return x, None
        return x, self.conv_last_deepsup(self.cbr_deepsup(conv_out[-2]))


class PPM(nn.Module):
    def __init__(self, num_class, fc_dim, deepsup, pool_scales=(1, 2, 3, 6)):
        super().__init__()
        self.deepsup = deepsup
        self.ppm = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), nn.Conv2d(fc_dim, 512, 1, bias=False), BatchNorm2d(512), nn.ReLU(inplace=True))
            for s in pool_scales)
        if deepsup:
            self.cbr_deepsup = conv3x3_bn_relu(fc_dim // 2, fc_dim // 4)
        self.conv_last = nn.Sequential(
            nn.Conv2d(fc_dim + len(pool_scales) * 512, 512, 3, padding=1, bias=False), BatchNorm2d(512),
            nn.ReLU(inplace=True), nn.Dropout2d(0.1), nn.Conv2d(512, num_class, 1))
        if deepsup:
            self.conv_last_deepsup = nn.Conv2d(fc_dim // 4, num_class, 1, 1, 0)
            self.dropout_deepsup = nn.Dropout2d(0.1)

    def forward(self, conv_out, with_deepsup):
        conv5 = conv_out[-1]
        size = conv5.shape[-2:]
        x = self.conv_last(torch.cat([conv5] + [interpolate(p(conv5), size) for p in self.ppm], 1))
        if not (self.deepsup and with_deepsup):
            return x, None
        d = self.conv_last_deepsup(self.dropout_deepsup(self.cbr_deepsup(conv_out[-2])))
        return x, d


class UPerNet(nn.Module):
    def __init__(self, num_class, fc_dim, fpn_dim, pool_scales=(1, 2, 3, 6), fpn_inplanes=(256, 512, 1024, 2048)):
        super().__init__()
        self.ppm_pooling = nn.ModuleList(nn.AdaptiveAvgPool2d(s) for s in pool_scales)
        self.ppm_conv = nn.ModuleList(
            nn.Sequential(nn.Conv2d(fc_dim, 512, 1, bias=False), BatchNorm2d(512), nn.ReLU(inplace=True))
            for _ in pool_scales)
        self.ppm_last_conv = conv3x3_bn_relu(fc_dim + len(pool_scales) * 512, fpn_dim)
        self.fpn_in = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, fpn_dim, 1, bias=False), BatchNorm2d(fpn_dim), nn.ReLU(inplace=True))
            for c in fpn_inplanes[:-1])
        self.fpn_out = nn.ModuleList(nn.Sequential(conv3x3_bn_relu(fpn_dim, fpn_dim)) for _ in fpn_inplanes[:-1])
        self.conv_last = nn.Sequential(conv3x3_bn_relu(len(fpn_inplanes) * fpn_dim, fpn_dim), nn.Conv2d(fpn_dim, num_class, 1))

    def forward(self, conv_out, with_deepsup):
        conv5 = conv_out[-1]
        size = conv5.shape[-2:]
        ppm_out = [conv5] + [c(interpolate(p(conv5), size)) for p, c in zip(self.ppm_pooling, self.ppm_conv)]
        f = self.ppm_last_conv(torch.cat(ppm_out, 1))
        fpn = [f]
        for i in reversed(range(len(conv_out) - 1)):
            lateral = self.fpn_in[i](conv_out[i])
            f = lateral + interpolate(f, lateral.shape[-2:])
            fpn.append(self.fpn_out[i](f))
        fpn.reverse()
        size = fpn[0].shape[-2:]
        x = self.conv_last(torch.cat([fpn[0]] + [interpolate(p, size) for p in fpn[1:]], 1))
        return x, None


# ------------------------------------------------------------------------------ builders

ENCODER_CHANNELS = {'resnet18': 512, 'resnet18dilated': 512, 'resnet50': 2048, 'resnet50dilated': 2048,
                    'mobilenetv2dilated': 320, 'hrnetv2': 720}


def build_encoder(name):
    if name == 'resnet18':
        return ResnetEncoder(BasicBlock, [2, 2, 2, 2])
    if name == 'resnet18dilated':
        return ResnetEncoder(BasicBlock, [2, 2, 2, 2], dilate_scale=8)
    if name == 'resnet50':
        return ResnetEncoder(Bottleneck, [3, 4, 6, 3])
    if name == 'resnet50dilated':
        return ResnetEncoder(Bottleneck, [3, 4, 6, 3], dilate_scale=8)
    if name == 'mobilenetv2dilated':
        return MobileNetV2Dilated(dilate_scale=8)
    if name == 'hrnetv2':
        return HRNetV2()
    raise ValueError(f'encoder {name} is not in the benchmark baseline')


def build_decoder(name, fc_dim, num_class=150):
    if name in ('c1', 'c1_deepsup'):
        return C1(num_class, fc_dim, name.endswith('_deepsup'))
    if name in ('ppm', 'ppm_deepsup'):
        return PPM(num_class, fc_dim, name.endswith('_deepsup'))
    if name == 'upernet':
        return UPerNet(num_class, fc_dim, 512)
    if name == 'upernet_lite':
        return UPerNet(num_class, fc_dim, 256)
    raise ValueError(f'decoder {name} is not in the benchmark baseline')


def output_stride(encoder, decoder):
    if decoder.startswith('upernet') or encoder == 'hrnetv2':
        return 4
    return 8 if 'dilated' in encoder else 32


class SegmentationModule(nn.Module):
    """encoder + decoder + the reference's inference and training heads."""

    def __init__(self, encoder, decoder, num_class=150, deep_sup_scale=0.4):
        super().__init__()
        self.encoder = build_encoder(encoder)
        self.decoder = build_decoder(decoder, ENCODER_CHANNELS[encoder], num_class)
        self.deep_sup_scale = deep_sup_scale if decoder.endswith('_deepsup') else None
        self.crit = nn.NLLLoss(ignore_index=-1)

    def logits(self, x, with_deepsup=False):
        return self.decoder(self.encoder(x), with_deepsup)

    def infer(self, x, seg_size):
        """The reference's inference: upsample logits to seg_size, softmax over classes."""
        x, _ = self.logits(x)
        return F.softmax(interpolate(x.float(), seg_size), dim=1)

    @staticmethod
    def pixel_acc(pred, label):
        _, preds = torch.max(pred, dim=1)
        valid = (label >= 0).long()
        acc_sum = torch.sum(valid * (preds == label).long())
        pixel_sum = torch.sum(valid)
        return acc_sum.float() / (pixel_sum.float() + 1e-10)

    def forward(self, img, label):
        """Training forward as the reference: (loss, acc)."""
        x, d = self.logits(img, with_deepsup=True)
        x = F.log_softmax(x.float(), dim=1)
        loss = self.crit(x, label)
        if self.deep_sup_scale is not None:
            loss = loss + self.crit(F.log_softmax(d.float(), dim=1), label) * self.deep_sup_scale
        return loss, self.pixel_acc(x, label)


def group_weight(module):
    """The reference's train.py group_weight: weight decay on conv/linear weights only."""
    decay, no_decay = [], []
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            decay.append(m.weight)
            if m.bias is not None:
                no_decay.append(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.weight is not None:
                no_decay.append(m.weight)
            if m.bias is not None:
                no_decay.append(m.bias)
    assert len(list(module.parameters())) == len(decay) + len(no_decay)
    return [dict(params=decay), dict(params=no_decay, weight_decay=0.0)]


def make_optimizers(model, lr_encoder=0.02, lr_decoder=0.02, momentum=0.9, weight_decay=1e-4):
    return [torch.optim.SGD(group_weight(model.encoder), lr=lr_encoder, momentum=momentum, weight_decay=weight_decay),
            torch.optim.SGD(group_weight(model.decoder), lr=lr_decoder, momentum=momentum, weight_decay=weight_decay)]
