import * as z from 'zod';
import { setThreads } from '../engine/native.js';
import { isPositiveInt, type Options, type Parsed } from '../io/argv.js';
import { givenValues, helpLines, optionFields, parseGiven, parseOptions } from '../io/schema-options.js';
import { loadChatModel, type ChatModel } from '../model/load.js';
import type { BaseDtype } from '../engine/frozen.js';
import { baseDtypeSetting, policyInputs, ropeSetting } from '../train/stages/common.js';

/** Applies --threads (absent keeps the OpenMP default: all cores). */
export function applyThreads(a: Parsed): void {
  const n = a.optNum('threads', isPositiveInt, 'a positive integer');
  if (n !== undefined) setThreads(n);
}

/** --model, --adapter, --tokenizer, --template, --base-dtype: the flags that name a chat model, as the training stages spell them. */
const MODEL_SCHEMA = z.strictObject({ ...policyInputs, ...baseDtypeSetting });
const MODEL_FIELDS = optionFields(MODEL_SCHEMA);
export const MODEL_FLAGS: Options = parseOptions(MODEL_FIELDS);
export const MODEL_USAGE = helpLines(MODEL_FIELDS).join('\n');

/** --rope-scaling TYPE:FACTOR, as the training stages spell it. */
const ROPE_SCHEMA = z.strictObject(ropeSetting);
const ROPE_FIELDS = optionFields(ROPE_SCHEMA);
export const ROPE_FLAGS: Options = parseOptions(ROPE_FIELDS);
export const ROPE_USAGE = helpLines(ROPE_FIELDS).join('\n');

/** Loads --model (merging --adapter into it, RoPE scaled by --rope-scaling where the command takes it), its tokenizer and chat template. */
export function loadPolicy(a: Parsed, trainable: boolean): Promise<ChatModel> {
  const { rope_scaling } = parseGiven(ROPE_SCHEMA, ROPE_FIELDS, givenValues(ROPE_FIELDS, a), ROPE_USAGE);
  return loadChatModel({
    baseDtype: baseDtypeFlag(a),
    model: a.need('model'),
    adapter: a.str('adapter'),
    tokenizer: a.str('tokenizer'),
    template: a.str('template'),
    trainable,
    ropeScaling: rope_scaling,
  });
}

/** --base-dtype: how a frozen base is kept (default: as the checkpoint stores it). */
export function baseDtypeFlag(a: Parsed): BaseDtype | undefined {
  const BASE = z.strictObject(baseDtypeSetting);
  const fields = optionFields(BASE);
  return parseGiven(BASE, fields, givenValues(fields, a), MODEL_USAGE).base_dtype;
}
