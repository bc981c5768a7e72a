// The departments a disease in the built-in corpus may name, and which of them overlap in
// practice. The overlap table matters for generated questions: "which department treats X"
// or "which drug treats X" must not offer a distractor that a doctor would also accept, and
// two departments that share patients (paediatrics and infectious diseases, say) share facts.

export const DEPARTMENTS = [
  '呼吸内科', '心血管内科', '消化内科', '内分泌科', '神经内科', '肾内科', '泌尿外科',
  '感染科', '皮肤科', '眼科', '耳鼻咽喉科', '口腔科', '妇产科', '儿科', '骨科',
  '风湿免疫科', '精神心理科', '血液科', '肿瘤科', '普通外科', '血管外科',
] as const;

export type Department = (typeof DEPARTMENTS)[number];

// One direction is enough; relatedDepartments() makes the relation symmetric.
const OVERLAPS: Record<Department, readonly Department[]> = {
  呼吸内科: ['感染科', '儿科', '肿瘤科', '耳鼻咽喉科', '心血管内科'],
  心血管内科: ['血管外科', '内分泌科', '神经内科', '肾内科'],
  消化内科: ['普通外科', '感染科', '肿瘤科', '儿科'],
  内分泌科: ['妇产科', '肾内科', '骨科', '风湿免疫科', '眼科'],
  神经内科: ['精神心理科', '耳鼻咽喉科', '眼科', '骨科', '儿科'],
  肾内科: ['泌尿外科', '风湿免疫科', '感染科'],
  泌尿外科: ['妇产科', '肿瘤科'],
  感染科: ['儿科', '皮肤科', '血液科'],
  皮肤科: ['儿科', '风湿免疫科', '妇产科'],
  眼科: ['儿科', '风湿免疫科', '耳鼻咽喉科', '皮肤科'],
  耳鼻咽喉科: ['口腔科', '儿科', '肿瘤科'],
  口腔科: ['儿科', '风湿免疫科'],
  妇产科: ['肿瘤科', '普通外科', '心血管内科', '神经内科'],
  儿科: ['精神心理科', '血液科', '心血管内科', '消化内科'],
  骨科: ['风湿免疫科'],
  风湿免疫科: ['消化内科', '神经内科', '血液科'],
  精神心理科: [],
  血液科: ['肿瘤科', '妇产科'],
  肿瘤科: ['普通外科'],
  普通外科: ['血管外科'],
  血管外科: [],
};

const RELATED: ReadonlyMap<string, ReadonlySet<string>> = (() => {
  const m = new Map<string, Set<string>>(DEPARTMENTS.map((d) => [d, new Set<string>([d])]));
  for (const [a, bs] of Object.entries(OVERLAPS)) {
    for (const b of bs) {
      m.get(a)!.add(b);
      m.get(b)!.add(a);
    }
  }
  return m;
})();

/** The department itself and every department that shares its patients. */
export function relatedDepartments(dept: string): ReadonlySet<string> {
  const r = RELATED.get(dept);
  if (!r) throw new Error(`unknown department "${dept}"; expected one of ${DEPARTMENTS.join('、')}`);
  return r;
}

export function isDepartment(x: string): x is Department {
  return RELATED.has(x);
}
