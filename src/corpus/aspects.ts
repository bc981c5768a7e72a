// What a patient asks about a disease (an aspect), how they phrase it, and the sound answer
// a careful doctor gives. SFT conversations, preference pairs and PT Q&A prose all draw on
// these, so a fact is worded the same way wherever it appears.
import type { Disease } from './knowledge.js';
import { fill, listZh, orZh } from './text.js';

export const ASPECTS = [
  'overview', 'symptoms', 'causes', 'examinations', 'treatments', 'drugs',
  'department', 'precautions', 'urgent', 'contagious',
] as const;
export type Aspect = (typeof ASPECTS)[number];

/** The aspects a disease's record can answer (urgent signs and contagiousness are optional). */
export function aspectsOf(d: Disease): Aspect[] {
  return ASPECTS.filter((a) => (a === 'urgent' ? !!d.urgent_signs : a === 'contagious' ? d.contagious !== undefined : true));
}

/** Questions naming the disease as {n}. Each list is one template family, split by wording. */
export const QUESTIONS: Record<Aspect, readonly string[]> = {
  overview: ['什么是{n}？', '请简单介绍一下{n}。', '{n}是一种什么病？', '能给我讲讲{n}吗？', '医生说我得了{n}，这是个什么病？'],
  symptoms: [
    '{n}有哪些症状？', '得了{n}一般会有什么表现？', '{n}的典型症状是什么？',
    '我家人被诊断为{n}，这个病通常会有哪些不舒服？', '怎么知道自己是不是得了{n}？会有什么症状？', '请介绍一下{n}的临床表现。',
  ],
  causes: ['{n}是什么原因引起的？', '为什么会得{n}？', '{n}的常见诱因有哪些？', '哪些因素容易导致{n}？', '我想了解一下{n}的病因。'],
  examinations: [
    '怀疑{n}需要做哪些检查？', '{n}要怎么确诊？', '去医院看{n}一般要查什么？', '诊断{n}常用哪些检查？',
    '医生说可能是{n}，还要做什么检查才能确定？',
  ],
  treatments: ['{n}怎么治疗？', '{n}能治好吗？一般怎么治？', '得了{n}该怎么办？', '{n}有哪些治疗方法？', '请问{n}的治疗原则是什么？'],
  drugs: ['{n}一般吃什么药？', '治疗{n}常用哪些药物？', '得了{n}可以用什么药？', '{n}的常用药有哪些？', '医生，{n}需要用药吗？常用什么药？'],
  department: ['{n}应该挂哪个科？', '看{n}去医院哪个科室？', '怀疑自己得了{n}，该去哪个科就诊？', '{n}属于哪个科室管？', '我想看{n}，挂号挂什么科？'],
  precautions: [
    '{n}患者平时要注意什么？', '得了{n}，生活上有哪些注意事项？', '{n}日常护理要注意哪些方面？',
    '怎样预防{n}加重或复发？', '{n}患者在饮食起居上需要注意什么？',
  ],
  urgent: ['{n}出现什么情况需要马上去医院？', '{n}有哪些危险信号？', '得了{n}，什么时候必须去急诊？', '{n}哪些症状提示病情严重？'],
  contagious: ['{n}会传染吗？', '{n}有传染性吗？', '家里有人得了{n}，会传染给别人吗？', '和{n}患者接触会被传染吗？'],
};

/** Follow-up questions in a dialogue, where the disease was named in an earlier turn. */
export const FOLLOWUPS: Record<Aspect, readonly string[]> = {
  overview: ['这到底是个什么病？', '能再详细说说这个病吗？'],
  symptoms: ['这个病一般有什么症状？', '还会有哪些别的表现？'],
  causes: ['怎么会得这个病呢？', '这个病是什么原因引起的？'],
  examinations: ['到医院一般要做哪些检查？', '需要做什么检查才能确诊？'],
  treatments: ['如果确诊了，要怎么治疗？', '那一般怎么治呢？'],
  drugs: ['需要吃药吗？吃什么药？', '一般用哪些药？'],
  department: ['应该挂哪个科？', '去医院挂什么科比较合适？'],
  precautions: ['平时还要注意些什么？', '生活上有什么要注意的吗？'],
  urgent: ['有什么情况需要特别警惕吗？', '出现什么情况要马上去医院？'],
  contagious: ['这个病会传染给家里人吗？', '会不会传染？'],
};

/**
 * Symptoms a patient would complain of; "no symptoms", lab findings and features of the
 * course (休息后缓解, 反复发作, 疼痛程度轻中度) stay in the knowledge base but are not complaints.
 */
export function presentingSymptoms(d: Disease): string[] {
  return d.symptoms.filter((s) => !/无|体检|多数|早期|缓解|程度|较好|边界|^(慢性)?反复发作$/.test(s));
}

/** Complaints in a patient's words: {s} is a list of presenting symptoms. */
export const TRIAGE_QUESTIONS: readonly string[] = [
  '我这段时间{s}，可能是什么病？该挂哪个科？', '出现{s}，这是怎么回事？', '医生您好，我{s}好几天了，这是什么问题？',
  '{s}，需要去医院看吗？看哪个科？', '家里老人这阵子{s}，会不会是什么病？',
];

/** Transmission routes among the causes, for the contagiousness answer. */
function routes(d: Disease): string[] {
  return d.causes.filter((c) => /传播|叮咬|接触|共用|饮用|输血/.test(c));
}

function urgentSentence(d: Disease): string {
  return d.urgent_signs ? `如果出现${orZh(d.urgent_signs.slice(0, 2))}，应立即就医。` : '';
}

/** The number of wordings answer() has for each aspect. */
export const ANSWER_VARIANTS = 2;

/**
 * The sound answer about one aspect of `d`. `variant` picks the wording, so a wrong-fact
 * rejection built from a doctored disease differs from the chosen answer only in the fact.
 */
export function answer(d: Disease, aspect: Aspect, variant: number): string {
  const n = d.name;
  const v = variant % ANSWER_VARIANTS;
  switch (aspect) {
    case 'overview':
      return v === 0
        ? `${n}是一种${d.category}，一般在${d.department}诊治。常见表现有${listZh(d.symptoms.slice(0, 3))}，多与${listZh(d.causes.slice(0, 2))}等因素有关。治疗上以${listZh(d.treatments.slice(0, 2))}为主，具体方案需由医生制定。`
        : `${n}属于${d.category}，主要表现为${listZh(d.symptoms.slice(0, 3))}。它的发生常与${listZh(d.causes.slice(0, 2))}有关，确诊一般需要借助${listZh(d.examinations.slice(0, 2))}。如有相关症状，建议到${d.department}就诊。`;
    case 'symptoms':
      return v === 0
        ? `${n}的常见症状包括${listZh(d.symptoms)}。${urgentSentence(d)}症状轻重因人而异，如果怀疑患病，建议到${d.department}就诊明确诊断。`
        : `得了${n}，患者通常会出现${listZh(d.symptoms)}等表现。${urgentSentence(d)}这些表现也可能见于其他疾病，确诊需要医生结合检查判断。`;
    case 'causes':
      return v === 0
        ? `${n}常见的病因和诱因有${listZh(d.causes)}。了解这些因素有助于预防，平时可以注意${listZh(d.precautions.slice(0, 2))}。`
        : `${n}的发生通常与${listZh(d.causes)}等因素有关，具体原因需要医生结合病史和检查综合判断。`;
    case 'examinations':
      return v === 0
        ? `怀疑${n}时，医生通常会安排${listZh(d.examinations)}。具体做哪些项目，需要医生根据病情决定。`
        : `诊断${n}常用的检查项目有${listZh(d.examinations)}。建议先到${d.department}就诊，由医生评估后再选择合适的检查。`;
    case 'treatments':
      return v === 0
        ? `${n}的治疗方法主要包括${listZh(d.treatments)}。具体方案应由${d.department}医生根据病情制定，请遵医嘱治疗并按时复诊。`
        : `治疗${n}一般采取${listZh(d.treatments)}等措施。不同患者病情不同，建议到${d.department}就诊，在医生指导下规范治疗。`;
    case 'drugs':
      return v === 0
        ? `${n}常用的药物有${listZh(d.drugs)}等。具体用哪种药、用多大剂量，需要医生根据病情决定，请不要自行购药或随意调整剂量。`
        : `治疗${n}时，医生可能会使用${listZh(d.drugs)}等药物。用药必须遵医嘱，出现不良反应要及时告诉医生，不要自行停药或加量。`;
    case 'department': {
      const tail = d.urgent_signs ? `如果出现${orZh(d.urgent_signs)}，应直接去急诊。` : '就诊时可以把症状出现的时间和经过告诉医生。';
      return v === 0 ? `${n}一般建议到${d.department}就诊。${tail}` : `${n}属于${d.department}的诊治范围，可以挂${d.department}的号。${tail}`;
    }
    case 'precautions':
      return v === 0
        ? `${n}患者平时需要注意：${listZh(d.precautions)}。同时要遵医嘱治疗，定期复诊。`
        : `日常生活中，${n}患者应做到${listZh(d.precautions)}。如果症状加重或出现新的不适，应及时就医。`;
    case 'urgent': {
      const signs = listZh(d.urgent_signs ?? []);
      return v === 0
        ? `${n}患者如果出现${signs}，说明病情可能加重，应立即就医或拨打120急救电话。`
        : `${n}需要警惕的危险信号包括${signs}。一旦出现这些情况，不要拖延，应马上到医院急诊就诊。`;
    }
    case 'contagious': {
      const r = routes(d);
      if (d.contagious) {
        return `${n}具有传染性。${r.length ? `常见传播途径有${listZh(r)}。` : ''}患病期间应注意${listZh(d.precautions.slice(0, 2))}，避免传染他人。`;
      }
      return `${n}一般不会通过日常接触在人与人之间传染。${r.length ? `但它可以通过${listZh(r)}等途径感染，应注意防护。` : '与患者正常接触不必担心被传染。'}`;
    }
  }
}

/** The question for an aspect, worded by template t, naming the disease as `name`. */
export function question(aspect: Aspect, t: number, name: string): string {
  return fill(QUESTIONS[aspect][t], { n: name });
}

/** A doctor's answer to a complaint of `shown` symptoms that points to `d`. */
export function triageAnswer(d: Disease, shown: readonly string[]): string {
  return `你描述的${listZh(shown)}等表现，可能与${d.name}有关，但也可能由其他疾病引起，需要医生面诊才能明确。建议到${d.department}就诊，医生可能会安排${listZh(d.examinations.slice(0, 2))}。${urgentSentence(d)}`;
}
