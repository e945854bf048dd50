/**
 * Devices and precision: where a model computes ('cpu', 'cuda', 'cuda:N') and how (float32 or
 * bfloat16 - autocast on CUDA and on CPUs with AVX512-BF16 or AMX -, channels-last memory format,
 * cuDNN benchmark mode). Checked here,
 * before any native work, with errors that say what the user can do about them.
 */
import { SegtoolError } from './errors.js';
import { native } from './native.js';
import { describe, expectBoolean, expectOneOf } from './validate.js';

import { PRECISIONS, type Precision } from './config/schema.js';

export type { Precision };
export type DeviceName = 'cpu' | 'cuda' | `cuda:${number}`;

/** How forward passes run; every field optional (defaults: fp32, contiguous, no benchmark). */
export interface RuntimeOptions {
  /**
   * 'bf16': convolutions and matrix products in bfloat16 (autocast; weights, gradients, the SGD
   * update and the loss stay float32). On CUDA, and on CPUs with AVX512-BF16 or AMX (an error
   * elsewhere: see cpuStatus()). On the CPU, eval inference keeps the folded weights in bfloat16.
   */
  precision?: Precision;
  /** Inputs (hence convolutions) in channels-last memory format; allowed on CPU too. */
  channelsLast?: boolean;
  /** cuDNN autotuning for fixed input sizes (a process-wide LibTorch setting; no effect on CPU). */
  cudnnBenchmark?: boolean;
  /**
   * Eval-mode inference through the fused graph: every BatchNorm folded into the convolution
   * before it, once per model (rebuilt when weights change). Default true; false runs the
   * unfused graph (for checking). SEGTOOL_FUSE=0 in the environment turns it off process-wide.
   */
  fuse?: boolean;
}

export interface CudaStatus {
  /** LibTorch has CUDA and sees at least one device. */
  available: boolean;
  deviceCount: number;
  /** segtool's own CUDA kernels are compiled into this addon. */
  kernels: boolean;
  torchVersion: string;
}

/** What this build and machine offer for CUDA. */
export function cudaStatus(): CudaStatus {
  const info = native().buildInfo();
  const deviceCount = info.cuda ? (info.cudaDevices ?? 0) : 0;
  return { available: deviceCount > 0, deviceCount, kernels: info.cudaKernels, torchVersion: info.torchVersion };
}

export interface CpuStatus {
  /** AVX-512 F/BW/VL usable (CPU and OS). */
  avx512: boolean;
  avx512Bf16: boolean;
  amxBf16: boolean;
  /** precision 'bf16' can run on this CPU. */
  bf16: boolean;
  /** Why it cannot ('' when it can). */
  bf16Unsupported: string;
}

/** What this CPU offers for bfloat16 (detected at run time). */
export function cpuStatus(): CpuStatus {
  const info = native().buildInfo();
  return {
    avx512: info.cpuAvx512,
    avx512Bf16: info.cpuAvx512Bf16,
    amxBf16: info.cpuAmxBf16,
    bf16: info.cpuBf16Unsupported === '',
    bf16Unsupported: info.cpuBf16Unsupported,
  };
}

const DEVICE_PATTERN = /^(cpu|cuda|cuda:(0|[1-9][0-9]{0,3}))$/;

/** Checks the spelling of a device name: 'cpu', 'cuda' or 'cuda:N'. */
export function expectDeviceName(name: string, value: unknown): DeviceName {
  if (typeof value !== 'string' || !DEVICE_PATTERN.test(value)) {
    throw new SegtoolError('ERR_INVALID_ARG', `Expected 'cpu', 'cuda' or 'cuda:N' for ${name} but received ${describe(value)}`);
  }
  return value as DeviceName;
}

/** A device name that this build and machine can use; SegtoolError ERR_DEVICE otherwise. */
export function checkDevice(name: string, value: unknown): DeviceName {
  const device = expectDeviceName(name, value);
  if (device === 'cpu') return device;
  const cuda = cudaStatus();
  if (!cuda.available) {
    throw new SegtoolError(
      'ERR_DEVICE',
      `${name} '${device}' is not available: this segtool addon uses LibTorch ${cuda.torchVersion} ` +
        `${native().buildInfo().cuda ? 'with CUDA but sees no GPU' : 'without CUDA (a CPU-only build)'}. Possible fixes: ` +
        `1) on a machine with an NVIDIA GPU, build segtool against a CUDA LibTorch (docs/gpu.md: a pip-installed PyTorch 2.x, ` +
        `Torch_DIR=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')/Torch npm run build); ` +
        `2) check that the GPU is visible (nvidia-smi, CUDA_VISIBLE_DEVICES); 3) use ${name} 'cpu'.`,
    );
  }
  const index = device === 'cuda' ? 0 : Number(device.slice(5));
  if (index >= cuda.deviceCount) {
    throw new SegtoolError(
      'ERR_DEVICE',
      `${name} '${device}' is not available: this machine has ${cuda.deviceCount} CUDA device(s) (cuda:0 to cuda:${cuda.deviceCount - 1})`,
    );
  }
  return device;
}

/** Validated runtime options for `device`: bf16 on a CPU without bf16 instructions is an error (no silent fallback). */
export function checkRuntime(name: string, options: RuntimeOptions, device: DeviceName): Required<RuntimeOptions> {
  const out: Required<RuntimeOptions> = {
    precision: options.precision === undefined ? 'fp32' : expectOneOf(`${name}.precision`, options.precision, PRECISIONS),
    channelsLast: options.channelsLast === undefined ? false : expectBoolean(`${name}.channelsLast`, options.channelsLast),
    cudnnBenchmark: options.cudnnBenchmark === undefined ? false : expectBoolean(`${name}.cudnnBenchmark`, options.cudnnBenchmark),
    fuse: options.fuse === undefined ? true : expectBoolean(`${name}.fuse`, options.fuse),
  };
  if (out.precision === 'bf16' && device === 'cpu') {
    const cpu = cpuStatus();
    if (!cpu.bf16) {
      throw new SegtoolError(
        'ERR_DEVICE',
        `${name}.precision 'bf16' on device 'cpu' needs a CPU with AVX512-BF16 or AMX: ${cpu.bf16Unsupported}. Use precision 'fp32' on this CPU, or device 'cuda'`,
      );
    }
  }
  return out;
}

/** The runtime keys of one config section (TRAIN, VAL or TEST), as model options. */
export interface SectionRuntime extends Required<RuntimeOptions> {
  device: DeviceName;
}

export function runtimeFromConfig(
  cfg: { [S in 'TRAIN' | 'VAL' | 'TEST']: { device: string; precision: Precision; channels_last: boolean; cudnn_benchmark: boolean } },
  section: 'TRAIN' | 'VAL' | 'TEST',
): SectionRuntime {
  const s = cfg[section];
  const device = checkDevice(`${section}.device`, s.device);
  return { device, ...checkRuntime(section, { precision: s.precision, channelsLast: s.channels_last, cudnnBenchmark: s.cudnn_benchmark }, device) };
}

/** Moves a model (built and loaded on the CPU) to the runtime's device and sets its runtime options. */
export async function applyRuntime(
  model: { to(device: DeviceName): Promise<void>; setRuntime(options: RuntimeOptions): void },
  runtime: SectionRuntime,
): Promise<void> {
  if (runtime.device !== 'cpu') await model.to(runtime.device);
  model.setRuntime({ precision: runtime.precision, channelsLast: runtime.channelsLast, cudnnBenchmark: runtime.cudnnBenchmark });
}
