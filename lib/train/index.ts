export * from './schedule.js';
export * from './log.js';
export { train, trainingCheckpointPath, listTrainingCheckpoints, trainingModelOptions } from './train.js';
export type { TrainOptions, TrainResult, TrainEvent, IterationEvent, TrainHistoryEntry } from './train.js';
export { resolveConfigInput, type ConfigInput } from '../config/index.js';
export { readSampleList } from '../data/list.js';
export { writeFileAtomic, writeJsonAtomic } from '../io/files.js';
export { TensorBoardWriter, tfRecord, maskedCrc32c, crc32c, tensorBoardDir, tensorBoardLogger, logEvaluation } from './tensorboard.js';
