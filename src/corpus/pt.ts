// Pre-training passages: each disease written up in several styles (textbook paragraph,
// question-and-answer prose, patient leaflet, case report, doctor's talk, prevention notes).
// The style is the template family the held-out split withholds per seed.
import type { Rng } from '../engine/rng.js';
import type { Disease } from './knowledge.js';
import { pick, sample, shuffled } from './sampling.js';
import type { Splitter } from './split.js';
import { SplitCollector } from './split.js';
import { listZh, orZh } from './text.js';
import type { Split, TextRecord } from './types.js';

function aliasClause(d: Disease): string {
  return d.aliases?.length ? `（又称${d.aliases.join('、')}）` : '';
}

function contagionClause(d: Disease): string {
  if (d.contagious === undefined) return '';
  return d.contagious ? '该病具有传染性，需要注意防护。' : '该病一般不在人与人之间直接传染。';
}

// Question wordings used only inside PT prose, distinct from the SFT question templates so a
// held-out SFT prompt never appears verbatim in pre-training text.
const PT_QA: readonly [string, (d: Disease, r: Rng) => string][] = [
  ['{n}主要有哪些表现', (d, r) => `常见表现有${listZh(shuffled(r, d.symptoms))}。`],
  ['{n}和哪些因素有关', (d, r) => `多与${listZh(shuffled(r, d.causes))}等因素有关。`],
  ['确诊{n}通常靠什么检查', (d, r) => `常用的检查项目有${listZh(shuffled(r, d.examinations))}，由医生根据情况选择。`],
  ['{n}的治疗思路是什么', (d, r) => `治疗包括${listZh(shuffled(r, d.treatments))}，需要在${d.department}医生指导下进行。`],
  ['{n}会用到哪些药物', (d, r) => `常用药物有${listZh(shuffled(r, d.drugs))}，用法用量须遵医嘱，不可自行调整。`],
  ['{n}患者的生活要点有哪些', (d, r) => `要点包括${listZh(shuffled(r, d.precautions))}。`],
];

type Style = (d: Disease, r: Rng) => string;

const STYLES: readonly Style[] = [
  // textbook paragraph
  (d, r) =>
    `${d.name}${aliasClause(d)}是一种${d.category}，通常在${d.department}诊治。${contagionClause(d)}` +
    `其发生多与${listZh(shuffled(r, d.causes))}等因素有关。典型症状包括${listZh(shuffled(r, d.symptoms))}。` +
    `诊断时常用的检查有${listZh(shuffled(r, d.examinations))}。治疗原则包括${listZh(shuffled(r, d.treatments))}，` +
    `常用药物有${listZh(shuffled(r, d.drugs))}，具体用药须在医生指导下进行。患者日常应注意${listZh(shuffled(r, d.precautions))}。` +
    (d.urgent_signs ? `如出现${listZh(d.urgent_signs)}，应立即就医。` : ''),
  // question-and-answer prose
  (d, r) =>
    `关于${d.name}的常见问题\n` +
    sample(r, PT_QA, 4)
      .map(([q, a]) => `问：${q.replace('{n}', d.name)}？\n答：${d.name}${a(d, r)}`)
      .join('\n'),
  // patient leaflet
  (d) =>
    [
      `【${d.name}健康小贴士】`,
      `就诊科室：${d.department}`,
      `疾病类型：${d.category}`,
      `常见症状：${d.symptoms.join('、')}`,
      `常见原因：${d.causes.join('、')}`,
      `相关检查：${d.examinations.join('、')}`,
      `治疗方法：${d.treatments.join('、')}`,
      `常用药物：${d.drugs.join('、')}（请遵医嘱使用）`,
      `注意事项：${d.precautions.join('、')}`,
      ...(d.urgent_signs ? [`危险信号：${d.urgent_signs.join('、')}，出现时请立即就医`] : []),
    ].join('\n'),
  // case report
  (d, r) => {
    const shown = sample(r, d.symptoms, 2);
    const urgent = d.urgent_signs ? `，如果出现${orZh(sample(r, d.urgent_signs, 2))}，要立即复诊或去急诊` : '';
    return (
      `病例：一位患者因${listZh(shown)}到${d.department}就诊。医生详细询问病史后安排了${listZh(sample(r, d.examinations, 2))}，` +
      `结合结果诊断为${d.name}。医生解释，${d.name}多与${listZh(sample(r, d.causes, 2))}有关，治疗以${listZh(sample(r, d.treatments, 2))}为主，` +
      `并开具了${pick(r, d.drugs)}，叮嘱患者按时服药，不要自行加量或停药。医生还提醒患者平时要${listZh(sample(r, d.precautions, 2))}${urgent}。`
    );
  },
  // a doctor's talk
  (d, r) =>
    `很多人关心${d.name}该怎么办。医生介绍，${d.name}是${d.department}常见的${d.category}，常见诱因有${listZh(shuffled(r, d.causes))}。` +
    `患病后可能出现${listZh(shuffled(r, d.symptoms))}等不适。确诊需要借助${listZh(shuffled(r, d.examinations))}，不能仅凭症状自行判断。` +
    `治疗上，医生会根据病情选择${listZh(shuffled(r, d.treatments))}等方法，常用药物包括${listZh(shuffled(r, d.drugs))}。` +
    `医生特别提醒：${listZh(shuffled(r, d.precautions))}，这些对控制病情非常重要。`,
  // prevention and care notes
  (d, r) =>
    `${d.name}的预防与日常护理\n${d.name}的发生与${listZh(shuffled(r, d.causes))}等因素有关，因此预防的关键是减少这些危险因素。` +
    `已经患病的人应做到${listZh(shuffled(r, d.precautions))}。治疗期间要遵医嘱，常用药物如${listZh(sample(r, d.drugs, 3))}需要按医嘱服用。` +
    (d.urgent_signs ? `一旦出现${listZh(d.urgent_signs)}，说明病情可能加重，应尽快就医。` : '如果症状持续不缓解，应及时复诊。'),
  // outpatient guide
  (d, r) =>
    `${d.department}门诊导诊：${d.name}\n到${d.department}就诊的患者中，有一部分是${d.name}。这类患者常因${listZh(sample(r, d.symptoms, 3))}前来就诊。` +
    `门诊医生会先询问病史并查体，再根据需要安排${listZh(shuffled(r, d.examinations))}。${d.name}属于${d.category}，` +
    `常见原因包括${listZh(sample(r, d.causes, 3))}。${contagionClause(d)}明确诊断后，医生会制定包括${listZh(shuffled(r, d.treatments))}在内的治疗方案。` +
    (d.urgent_signs ? `候诊期间如出现${orZh(d.urgent_signs)}，应立即告知护士或转急诊。` : '患者应按预约时间复诊。'),
  // medication notes
  (d, r) =>
    `${d.name}用药须知\n治疗${d.name}的常用药物包括${listZh(shuffled(r, d.drugs))}。这些药物须在医生指导下使用，` +
    `用药期间不要自行加量、减量或停药，出现不适应及时告诉医生。除药物外，${d.name}的治疗还包括${listZh(shuffled(r, d.treatments))}。` +
    `生活方面，建议${listZh(shuffled(r, d.precautions))}。用药效果需要结合${listZh(sample(r, d.examinations, 2))}等结果评估，请按时复查。`,
];

/** One passage per disease per style. */
export function generatePt(diseases: readonly Disease[], splitter: Splitter, rng: Rng): Split<TextRecord> {
  const out = new SplitCollector<TextRecord>();
  for (const d of diseases) {
    for (const { t, place } of splitter.each(d, 'pt:style', STYLES.length)) {
      out.add(place, { text: STYLES[t](d, rng), disease: d.name, template: `pt:style#${t}` });
    }
  }
  return out.finish('pt', rng);
}
