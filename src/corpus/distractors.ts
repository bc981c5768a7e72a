// Facts that are clearly wrong for a disease: MCQ distractors and the swapped-in facts of
// wrong-fact preference rejections. "Clearly" is the point: an item is offered only when no
// disease of the same or an overlapping department lists it, it is not a general-purpose item
// (listed under more than two departments, such as 乏力 or 布洛芬), and it neither contains
// nor is contained in one of the disease's own items (头痛 vs 剧烈头痛).
import { DEPARTMENTS, relatedDepartments } from './departments.js';
import type { Disease, FactList } from './knowledge.js';

const MAX_DEPARTMENTS_PER_ITEM = 2;

// Risk factors, complaints and measures that fit many diseases even where the knowledge base
// happens not to list them (cancer does raise the risk of shingles), so never distractors.
const GENERIC: Partial<Record<FactList, RegExp>> = {
  causes: /遗传|家族|免疫|年龄|高龄|老年|肥胖|超重|体重|吸烟|饮酒|酗酒|压力|紧张|精神|情绪|疲劳|劳累|熬夜|睡眠|肿瘤|感染|病毒|细菌|妊娠|糖尿|血压|血糖|血脂|药|激素|外伤|不明|女性|环境|饮食|运动|受凉/,
  symptoms: /乏力|发热|高热|低热|头痛|头晕|恶心|呕吐|消瘦|体重|食欲|无症状|不适|疲劳|疲乏|疼痛/,
  treatments: /抗炎|抗感染|抗菌|抗病毒|清除|去除|隔离|吸氧|保护|休息|饮食|运动|戒烟|戒酒|心理|对症|随访|观察|药物|手术治疗|康复|锻炼|减重|体重|补液|水分|支持|病因|诱因|危险因素|生活方式|止痛/,
};

export class Distractors {
  /** field -> item -> departments of the diseases listing it (over the whole knowledge base). */
  private readonly departmentsOf = new Map<FactList, Map<string, Set<string>>>();
  private readonly poolCache = new Map<string, string[]>();

  /**
   * `all` decides what counts as correct somewhere; `offerable` limits which diseases'
   * items may be offered (training data must not carry items of held-out diseases).
   */
  constructor(
    private readonly all: readonly Disease[],
    private readonly offerable: readonly Disease[],
  ) {}

  private index(field: FactList): Map<string, Set<string>> {
    let m = this.departmentsOf.get(field);
    if (!m) {
      m = new Map();
      for (const d of this.all) {
        for (const x of d[field]) {
          if (!m.has(x)) m.set(x, new Set());
          m.get(x)!.add(d.department);
        }
      }
      this.departmentsOf.set(field, m);
    }
    return m;
  }

  /** Is `item` a clearly wrong answer for d's `field`? */
  isForeign(d: Disease, field: FactList, item: string): boolean {
    if (d[field].some((own) => own.includes(item) || item.includes(own))) return false;
    if (GENERIC[field]?.test(item)) return false;
    const depts = this.index(field).get(item);
    if (!depts) return true;
    if (depts.size > MAX_DEPARTMENTS_PER_ITEM) return false;
    const related = relatedDepartments(d.department);
    for (const x of depts) if (related.has(x)) return false;
    return true;
  }

  /** Every offerable item that is clearly wrong for d's `field`, in knowledge-base order. */
  pool(d: Disease, field: FactList): readonly string[] {
    const key = `${d.name}\u0000${field}`;
    let p = this.poolCache.get(key);
    if (!p) {
      const seen = new Set<string>();
      p = [];
      for (const e of this.offerable) {
        for (const x of e[field]) {
          if (!seen.has(x) && this.isForeign(d, field, x)) p.push(x);
          seen.add(x);
        }
      }
      this.poolCache.set(key, p);
    }
    return p;
  }

  /** Departments that neither are nor overlap with d's department. */
  wrongDepartments(d: Disease): string[] {
    const related = relatedDepartments(d.department);
    return DEPARTMENTS.filter((x) => !related.has(x));
  }

  /**
   * Offerable diseases that cannot be mistaken for `d` given the `shown` symptoms: from an
   * unrelated department and listing none of them (nor a sub- or super-string of one).
   */
  wrongDiagnoses(d: Disease, shown: readonly string[]): Disease[] {
    const related = relatedDepartments(d.department);
    return this.offerable.filter(
      (e) => e !== d && !related.has(e.department) && !e.symptoms.some((s) => shown.some((x) => s.includes(x) || x.includes(s))),
    );
  }
}
