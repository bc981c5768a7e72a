// Knowledge-graph triples -> text, as in Qilin-Med's KG subset of ChiMed: triples (head,
// relation, tail) are aggregated per entity (a disease with its causes, symptoms, drugs...),
// then rendered as a Chinese passage for pre-training and as question/answer pairs for SFT.
// Relation names follow the common Chinese medical KGs (QASystemOnMedicalKG's English keys
// such as has_symptom, recommand_drug, and their Chinese labels); others get a generic template.
import { describe, type Tagged } from './records.js';
import { Fields, hasAny, isObj, RecordError, type Format, type Obj, type ReadContext, type ReadItem } from './readers/format.js';
import { isRowError } from './readers/rows.js';

export interface Triple {
  head: string;
  relation: string;
  tail: string;
}

interface RelationTemplate {
  aliases: string[];
  passage: (entity: string, tails: string) => string;
  question: (entity: string) => string;
}

const TEMPLATES: RelationTemplate[] = [
  {
    aliases: ['病因', '原因', 'cause', 'causes', 'etiology'],
    passage: (e, t) => `${e}的病因包括${t}。`,
    question: (e) => `${e}是什么原因引起的？`,
  },
  {
    aliases: ['症状', '临床表现', '典型症状', 'symptom', 'symptoms', 'has_symptom'],
    passage: (e, t) => `${e}的常见症状有${t}。`,
    question: (e) => `${e}有哪些症状？`,
  },
  {
    aliases: [
      '药物',
      '常用药物',
      '推荐药物',
      '常用药品',
      '推荐药品',
      '药品',
      'drug',
      'drugs',
      'common_drug',
      'recommand_drug',
      'recommend_drug',
    ],
    passage: (e, t) => `治疗${e}的常用药物有${t}。`,
    question: (e) => `${e}常用哪些药物治疗？`,
  },
  {
    aliases: ['检查', '辅助检查', '诊断检查', 'check', 'need_check', 'examination'],
    passage: (e, t) => `${e}需要做的检查有${t}。`,
    question: (e) => `${e}需要做哪些检查？`,
  },
  {
    aliases: ['科室', '所属科室', '就诊科室', 'department', 'belongs_to'],
    passage: (e, t) => `${e}的就诊科室是${t}。`,
    question: (e) => `${e}应该挂哪个科室？`,
  },
  {
    aliases: ['并发症', '伴随疾病', 'complication', 'acompany_with', 'accompany_with'],
    passage: (e, t) => `${e}可能的并发症有${t}。`,
    question: (e) => `${e}会引起哪些并发症？`,
  },
  {
    aliases: ['治疗方法', '治疗方式', '治疗', 'treatment', 'cure_way'],
    passage: (e, t) => `${e}的治疗方法包括${t}。`,
    question: (e) => `${e}怎么治疗？`,
  },
  {
    aliases: ['宜吃', '推荐食物', 'do_eat', 'recommand_eat'],
    passage: (e, t) => `${e}患者宜吃${t}。`,
    question: (e) => `${e}患者适合吃什么？`,
  },
  { aliases: ['忌吃', '禁忌食物', 'not_eat'], passage: (e, t) => `${e}患者忌吃${t}。`, question: (e) => `${e}患者不能吃什么？` },
  {
    aliases: ['预防', '预防措施', 'prevent', 'prevention'],
    passage: (e, t) => `预防${e}的措施有${t}。`,
    question: (e) => `如何预防${e}？`,
  },
  {
    aliases: ['易感人群', '多发人群', 'easy_get', 'susceptible_population'],
    passage: (e, t) => `${e}的易感人群是${t}。`,
    question: (e) => `哪些人容易患${e}？`,
  },
  {
    aliases: ['发病部位', '部位', 'body_part', 'location'],
    passage: (e, t) => `${e}的发病部位在${t}。`,
    question: (e) => `${e}发生在哪个部位？`,
  },
  { aliases: ['传播途径', 'transmission'], passage: (e, t) => `${e}的传播途径有${t}。`, question: (e) => `${e}是怎么传播的？` },
];

const TEMPLATE_BY_ALIAS = new Map(TEMPLATES.flatMap((t) => t.aliases.map((a) => [a.toLowerCase(), t] as const)));

function templateFor(relation: string): RelationTemplate {
  return (
    TEMPLATE_BY_ALIAS.get(relation.toLowerCase()) ?? {
      aliases: [relation],
      passage: (e, t) => `${e}的${relation}：${t}。`,
      question: (e) => `${e}的${relation}是什么？`,
    }
  );
}

/** Per-entity relations, in the order relations and tails first appear; tails deduplicated. */
export class KgAggregator {
  private entities = new Map<string, { line: number; relations: Map<string, string[]> }>();

  add(t: Triple, line = 0): void {
    let e = this.entities.get(t.head);
    if (!e) this.entities.set(t.head, (e = { line, relations: new Map() }));
    const rel = templateFor(t.relation).aliases[0];
    const tails = e.relations.get(rel) ?? [];
    if (!tails.includes(t.tail)) tails.push(t.tail);
    e.relations.set(rel, tails);
  }

  get size(): number {
    return this.entities.size;
  }

  *[Symbol.iterator](): IterableIterator<{ entity: string; line: number; relations: Map<string, string[]> }> {
    for (const [entity, { line, relations }] of this.entities) yield { entity, line, relations };
  }
}

const joinTails = (tails: string[]) => tails.join('、');

/** A passage about one entity: its name, then one sentence per relation. */
export function renderEntityPassage(entity: string, relations: Map<string, string[]>): string {
  const sentences = [...relations].map(([rel, tails]) => templateFor(rel).passage(entity, joinTails(tails)));
  return `${entity}\n${sentences.join('')}`;
}

/** One question/answer pair per relation of the entity. */
export function renderEntityQa(entity: string, relations: Map<string, string[]>): { question: string; answer: string }[] {
  return [...relations].map(([rel, tails]) => {
    const t = templateFor(rel);
    return { question: t.question(entity), answer: t.passage(entity, joinTails(tails)) };
  });
}

const HEAD = ['head', 'subject', 'entity', 'h'];
const RELATION = ['relation', 'predicate', 'attribute', 'r'];
const TAIL = ['tail', 'object', 'value', 't'];

function tripleOf(o: Obj): Triple {
  const f = new Fields(o);
  const [head, relation, tail] = [f.text(HEAD).trim(), f.text(RELATION).trim(), f.text(TAIL).trim()];
  if (!head || !relation || !tail) throw new RecordError(`empty ${!head ? 'head' : !relation ? 'relation' : 'tail'} in triple`);
  return { head, relation, tail };
}

/**
 * Triples as CSV (head,relation,tail header) or JSONL ({head, relation, tail} or
 * subject/predicate/object). The whole graph is aggregated in memory before records are
 * produced, since one entity's triples may be anywhere in the file.
 */
export const kgFormat: Format = {
  name: 'kg',
  description: 'knowledge-graph triples (CSV or JSONL: head, relation, tail) -> per-entity passages and QA pairs',
  matches: (o) => hasAny(o, ['head', 'subject']) && hasAny(o, ['relation', 'predicate']) && hasAny(o, ['tail', 'object']),
  async *read(rows, ctx: ReadContext): AsyncGenerator<ReadItem> {
    const kg = new KgAggregator();
    for await (const row of rows) {
      if (isRowError(row)) {
        yield { line: row.line, reject: row.error, raw: row.raw };
        continue;
      }
      if (!isObj(row.value)) {
        yield { line: row.line, reject: `expected a triple object, got ${describe(row.value)}`, raw: row.raw };
        continue;
      }
      try {
        kg.add(tripleOf(row.value), row.line);
      } catch (err) {
        if (!(err instanceof RecordError)) throw err;
        yield { line: row.line, reject: err.message, raw: row.raw };
      }
    }
    yield* kgRecords(kg, ctx);
  },
};

/** The records a graph renders to: passages (documents) and/or QA pairs (conversations). */
export function* kgRecords(kg: KgAggregator, ctx: Pick<ReadContext, 'source' | 'kgOutput'>): Generator<ReadItem> {
  let n = 0;
  for (const { entity, line, relations } of kg) {
    const meta = { entity };
    const tagged: Tagged[] = [];
    if (ctx.kgOutput !== 'qa') {
      tagged.push({
        kind: 'document',
        record: { id: `${ctx.source}-kg-${n}`, source: ctx.source, text: renderEntityPassage(entity, relations), meta },
      });
    }
    if (ctx.kgOutput !== 'text') {
      renderEntityQa(entity, relations).forEach(({ question, answer }, k) =>
        tagged.push({
          kind: 'conversation',
          record: {
            id: `${ctx.source}-kgqa-${n}-${k}`,
            source: ctx.source,
            messages: [
              { role: 'user', content: question },
              { role: 'assistant', content: answer },
            ],
            meta,
          },
        }),
      );
    }
    n++;
    for (const t of tagged) yield { line, tagged: t };
  }
}
