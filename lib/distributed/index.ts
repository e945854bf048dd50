/** Distributed training and evaluation: communicator, SyncBN, sharded metrics, launcher. */
export { Communicator, createCommunicator, type CommunicatorOptions, type DistBackend } from './communicator.js';
export { DEFAULT_MASTER_PORT, DEFAULT_TIMEOUT_MS, distributedEnv, timeoutFromEnv, type DistributedEnv } from './env.js';
export { ShardedMetrics, shardRange } from './eval.js';
export {
  findFreePort,
  launch,
  needsLaunch,
  parseDeviceList,
  parseLaunchArgs,
  type LaunchOptions,
  type LaunchResult,
  type RankExit,
} from './launch.js';
export {
  batchNorm,
  syncBatchNorm,
  type BatchNormArgs,
  type BatchNormResult,
  type SyncBatchNormArgs,
  type SyncBatchNormMode,
} from './sync-batch-norm.js';
