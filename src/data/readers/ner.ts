import type { NerEntity } from '../records.js';
import { describe, sliceCodePoints } from '../records.js';
import { Fields, hasAny, isObj, RecordError, rowFormat, type Format, type Obj } from './format.js';

/** How one upstream NER format spells an entity. */
interface EntitySpelling {
  start: string[];
  end: string[];
  type: string[];
  text: string[];
  /** Upstream end offsets that are inclusive (CMeEE) get +1. */
  inclusiveEnd: boolean;
  /** Offsets nested under this key (CCKS's entity_index: {begin, end}). */
  nested?: string;
}

function entitiesOf(list: unknown, field: string, sp: EntitySpelling, text: string): NerEntity[] {
  if (!Array.isArray(list)) throw new RecordError(`${field}: expected an array, got ${describe(list)}`);
  return list.map((e, i) => {
    const at = `${field}[${i}]`;
    if (!isObj(e)) throw new RecordError(`${at}: expected an object, got ${describe(e)}`);
    const f = new Fields(e);
    const where = sp.nested ? f.get([sp.nested]) : e;
    if (!isObj(where)) throw new RecordError(`${at}.${sp.nested}: expected {begin, end}, got ${describe(where)}`);
    const g = new Fields(where);
    const start = g.get(sp.start);
    const end = g.get(sp.end);
    if (!Number.isInteger(start) || !Number.isInteger(end)) {
      throw new RecordError(`${at}: offsets ${sp.start[0]}/${sp.end[0]} must be integers, got ${describe(start)}, ${describe(end)}`);
    }
    const type = f.text(sp.type);
    // CCKS's original release has no entity text; the span itself is the text then
    const span = f.optionalText(sp.text) ?? sliceCodePoints(text, start as number, (end as number) + (sp.inclusiveEnd ? 1 : 0));
    return { start: start as number, end: (end as number) + (sp.inclusiveEnd ? 1 : 0), type, text: span };
  });
}

function nerFormat(
  name: 'ner' | 'cmeee' | 'ccks',
  description: string,
  matches: (o: Obj) => boolean,
  textKeys: string[],
  listKeys: string[],
  spellings: EntitySpelling[],
): Format {
  return rowFormat(name, description, matches, (obj, ctx, line) => {
    const f = new Fields(obj);
    const text = f.text(textKeys);
    const listKey = f.key(listKeys);
    if (listKey === undefined) throw new RecordError(`missing field ${listKeys.join('|')}`);
    const list = obj[listKey];
    const first = Array.isArray(list) && isObj(list[0]) ? list[0] : undefined;
    const sp = (first && spellings.find((s) => hasAny(first, s.nested ? [s.nested] : s.start))) ?? spellings[0];
    return { kind: 'ner', record: { ...f.header(ctx, line), text, entities: entitiesOf(list, listKey, sp, text) } };
  });
}

const firstEntity = (o: Obj, key: string): Obj | undefined => {
  const l = o[key];
  return Array.isArray(l) && isObj(l[0]) ? l[0] : undefined;
};

/** The normalised NER shape: {text, entities: [{start, end (exclusive), type, text}]}. */
export const nerJsonFormat = nerFormat(
  'ner',
  'NER JSONL: {text, entities: [{start, end (exclusive), type, text}]}',
  (o) => hasAny(o, ['text']) && Array.isArray(o.entities) && !(firstEntity(o, 'entities') && 'start_idx' in firstEntity(o, 'entities')!),
  ['text'],
  ['entities'],
  [{ start: ['start'], end: ['end'], type: ['type'], text: ['text'], inclusiveEnd: false }],
);

/** CMeEE (CBLUE): a JSON array of {text, entities: [{start_idx, end_idx (inclusive), type, entity}]}. */
export const cmeeeFormat = nerFormat(
  'cmeee',
  'CMeEE JSON array: {text, entities: [{start_idx, end_idx (inclusive), type, entity}]}',
  (o) => hasAny(o, ['text']) && !!firstEntity(o, 'entities') && 'start_idx' in firstEntity(o, 'entities')!,
  ['text'],
  ['entities'],
  [{ start: ['start_idx'], end: ['end_idx'], type: ['type'], text: ['entity'], inclusiveEnd: true }],
);

/** CCKS-2019 clinical NER: {text, entity_list: [{entity_index: {begin, end}, entity_type, entity}]}
 *  or the original {originalText, entities: [{start_pos, end_pos, label_type}]}; ends exclusive. */
export const ccksFormat = nerFormat(
  'ccks',
  'CCKS-2019 NER JSONL: {text, entity_list: [{entity_index: {begin, end}, entity_type, entity}]} or {originalText, entities}',
  (o) => hasAny(o, ['entity_list', 'originalText']),
  ['text', 'originalText'],
  ['entity_list', 'entities'],
  [
    { start: ['begin'], end: ['end'], type: ['entity_type'], text: ['entity'], inclusiveEnd: false, nested: 'entity_index' },
    { start: ['start_pos'], end: ['end_pos'], type: ['label_type'], text: ['entity'], inclusiveEnd: false },
  ],
);
