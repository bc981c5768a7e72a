// NER examples built from sentence frames whose slots are filled with the knowledge base's
// own items, so every entity offset is known exactly. Entity types: see NER_TYPES.
import type { Rng } from '../engine/rng.js';
import { presentingSymptoms } from './aspects.js';
import type { Disease } from './knowledge.js';
import { sample } from './sampling.js';
import type { Splitter } from './split.js';
import { SplitCollector } from './split.js';
import { spokenName } from './sft.js';
import { codePoints } from './text.js';
import { NER_TYPES, type NerRecord, type NerSpan, type NerType, type Split } from './types.js';

const FRAMES: readonly string[] = [
  '{disease}的常见症状有{symptom}和{symptom}。',
  '患者因{symptom}、{symptom}到{department}就诊，诊断为{disease}。',
  '医生建议做{exam}，以明确是否患有{disease}。',
  '治疗{disease}常用{drug}，需要遵医嘱服用。',
  '{disease}患者可在医生指导下使用{drug}或{drug}。',
  '出现{symptom}时应警惕{disease}，尽早到{department}检查。',
  '入院后完善{exam}和{exam}，结果提示{disease}。',
  '本例患者{symptom}伴{symptom}三天，给予{drug}治疗后好转。',
  '{department}门诊常见{disease}，多表现为{symptom}。',
  '他以前得过{disease}，一直在吃{drug}。',
  '{exam}是诊断{disease}的常用方法。',
  '家人{symptom}两天了，需要去{department}看看吗？',
  '确诊{disease}后，医生开了{drug}，并嘱咐定期复查{exam}。',
  '{symptom}、{symptom}和{symptom}是{disease}的典型表现。',
  '如果{drug}效果不好，医生可能会调整{disease}的治疗方案。',
  '主诉：{symptom}。初步诊断：{disease}。处理：{drug}。',
  '{disease}（{department}）：{exam}可协助诊断，{drug}为常用药物之一。',
  '最近总是{symptom}，查了{exam}，医生说是{disease}。',
];

const SLOT = new RegExp(`\\{(${NER_TYPES.join('|')})\\}`, 'g');

function candidates(d: Disease, type: NerType, rng: Rng): string[] {
  switch (type) {
    case 'disease': return [spokenName(d, rng)];
    case 'symptom': return presentingSymptoms(d);
    case 'drug': return d.drugs;
    case 'exam': return d.examinations;
    case 'department': return [d.department];
  }
}

/** The frame filled for `d`, or undefined when `d` has too few items for its slots. */
export function fillFrame(frame: string, d: Disease, rng: Rng): { text: string; entities: NerSpan[] } | undefined {
  const parts = frame.split(SLOT); // literal, type, literal, type, ..., literal
  const need = new Map<NerType, number>();
  for (let i = 1; i < parts.length; i += 2) need.set(parts[i] as NerType, (need.get(parts[i] as NerType) ?? 0) + 1);
  const values = new Map<NerType, string[]>();
  for (const [type, n] of need) {
    const pool = candidates(d, type, rng);
    if (pool.length < n) return undefined;
    values.set(type, sample(rng, pool, n));
  }
  let text = '';
  let at = 0;
  const entities: NerSpan[] = [];
  parts.forEach((p, i) => {
    if (i % 2 === 0) {
      text += p;
      at += codePoints(p);
      return;
    }
    const type = p as NerType;
    const value = values.get(type)!.shift()!;
    const len = codePoints(value);
    entities.push({ start: at, end: at + len, type, text: value });
    text += value;
    at += len;
  });
  return { text, entities };
}

/** Every frame once per disease. */
export function generateNer(diseases: readonly Disease[], splitter: Splitter, rng: Rng): Split<NerRecord> {
  const out = new SplitCollector<NerRecord>();
  for (const d of diseases) {
    for (const { t, place } of splitter.each(d, 'ner:frame', FRAMES.length)) {
      const filled = fillFrame(FRAMES[t], d, rng);
      if (filled) out.add(place, { ...filled, disease: d.name, template: `ner:frame#${t}` });
    }
  }
  return out.finish('ner', rng);
}
