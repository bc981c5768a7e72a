export { Tokenizer, hasTokenizerFiles, cleanUpTokenization, TOKENIZER_FILES } from './tokenizer.js';
export type { TrainOptions, EncodeOptions, DecodeOptions, SaveOptions } from './tokenizer.js';
export { CHATML_TEMPLATE, EOS_TOKEN, IM_START, IM_END, PAD_TOKEN, ROLE_TOKENS, type Normalization } from './layout.js';
export { QWEN_PATTERN, compileOnigurumaPattern } from './regex.js';
export type { HfTokenizerJson, HfAddedToken } from './hf-json.js';
