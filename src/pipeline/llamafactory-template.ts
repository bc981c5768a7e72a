// Which LLaMA-Factory template renders conversations as the model's own chat template does.
// LLaMA-Factory does not run the tokenizer's Jinja template in training: it lays turns out with
// a named template of its own (src/llamafactory/data/template.py, read at commit
// ff6d4d12eeb035d6ce06805a5733dd7b29f2ac30). The layouts below restate those of the families
// chimed trains (Qwen, LLaMA 2/3, ChatML and the generic ones); the model's template and each
// layout render the same probe conversations, and the first layout that gives the same text
// names the template. Baichuan's templates were removed from LLaMA-Factory (commit 5cccaeec,
// January 2026), so Baichuan models match none and LLaMA-Factory falls back to parsing the
// tokenizer's template.
import type { ChatMessage, ChatTemplate } from '../tokenizer/chat-template.js';

interface Tokens {
  bos: string;
  eos: string;
}

interface Layout {
  name: string;
  prefix?: (t: Tokens) => string;
  system: (s: string, t: Tokens) => string;
  user: (u: string, t: Tokens) => string;
  assistant: (a: string, t: Tokens) => string;
  defaultSystem?: string;
  /** LLaMA 2: the system text goes inside the first user turn. */
  systemInFirstUser?: boolean;
  /** Reasoning templates (Qwen3): the answer to the last question opens with an empty thought. */
  emptyThought?: string;
}

const chatml = {
  system: (s: string) => `<|im_start|>system\n${s}<|im_end|>\n`,
  user: (u: string) => `<|im_start|>user\n${u}<|im_end|>\n<|im_start|>assistant\n`,
  assistant: (a: string) => `${a}<|im_end|>\n`,
};

const LAYOUTS: Layout[] = [
  { name: 'qwen3', ...chatml, emptyThought: '<think>\n\n</think>\n\n' },
  { name: 'qwen', ...chatml, defaultSystem: 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' },
  { name: 'chatml', ...chatml },
  {
    name: 'llama3',
    prefix: (t) => t.bos,
    system: (s) => `<|start_header_id|>system<|end_header_id|>\n\n${s}<|eot_id|>`,
    user: (u) => `<|start_header_id|>user<|end_header_id|>\n\n${u}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`,
    assistant: (a) => `${a}<|eot_id|>`,
  },
  {
    name: 'llama2',
    system: (s) => `<<SYS>>\n${s}\n<</SYS>>\n\n`,
    user: (u, t) => `${t.bos}[INST] ${u} [/INST]`,
    assistant: (a, t) => `${a}${t.eos}`,
    systemInFirstUser: true,
  },
  {
    name: 'default',
    system: (s, t) => `System: ${s}${t.eos}\n`,
    user: (u, t) => `Human: ${u}${t.eos}\nAssistant:`,
    assistant: (a, t) => `${a}${t.eos}\n`,
  },
  {
    name: 'vicuna',
    system: (s) => s,
    user: (u) => `USER: ${u} ASSISTANT:`,
    assistant: (a, t) => `${a}${t.eos}`,
    defaultSystem:
      "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.",
  },
];

/** The names this module can answer with (each a template of LLaMA-Factory at the commit above). */
export const LLAMAFACTORY_TEMPLATES = LAYOUTS.map((l) => l.name);

function renderLayout(l: Layout, messages: ChatMessage[], t: Tokens): string {
  const given = messages[0]?.role === 'system' ? messages[0].content : '';
  const turns = given ? messages.slice(1) : messages;
  const system = given || l.defaultSystem || '';
  const lastAnswer = turns.map((m) => m.role).lastIndexOf('assistant');
  let out = l.prefix?.(t) ?? '';
  if (system && !l.systemInFirstUser) out += l.system(system, t);
  turns.forEach((m, i) => {
    if (m.role === 'user') out += l.user(i === 0 && system && l.systemInFirstUser ? l.system(system, t) + m.content : m.content, t);
    else out += l.assistant((i === lastAnswer && l.emptyThought ? l.emptyThought : '') + m.content, t);
  });
  return out;
}

// Two rounds with a system prompt, and one round without (where default system prompts show).
const PROBES: ChatMessage[][] = [
  [
    { role: 'system', content: 'S0' },
    { role: 'user', content: 'Q1' },
    { role: 'assistant', content: 'A1' },
    { role: 'user', content: 'Q2' },
    { role: 'assistant', content: 'A2' },
  ],
  [
    { role: 'user', content: 'Q1' },
    { role: 'assistant', content: 'A1' },
  ],
];

export interface TemplateMatch {
  name: string;
  /** False when the texts agree only once whitespace is ignored (LLaMA 2's spaces around answers). */
  exact: boolean;
}

/**
 * The LLaMA-Factory template whose layout renders the probes exactly as `template` does (or,
 * failing that, the same up to whitespace), or null when none does or the template cannot
 * render them (e.g. it refuses a system turn).
 */
export function matchLlamaFactoryTemplate(template: ChatTemplate, tokens: { bos: string | null; eos: string }): TemplateMatch | null {
  const t: Tokens = { bos: tokens.bos ?? '', eos: tokens.eos };
  const tok = { encode: () => [], tokenToId: () => undefined, bosToken: t.bos, eosToken: t.eos };
  let ours: string[];
  try {
    ours = PROBES.map((p) => template.render(p, tok, false));
  } catch {
    return null;
  }
  const squash = (s: string) => s.replace(/\s+/g, '');
  for (const exact of [true, false]) {
    const same = (a: string, b: string) => (exact ? a === b : squash(a) === squash(b));
    const hit = LAYOUTS.find((l) => PROBES.every((p, i) => same(renderLayout(l, p, t), ours[i])));
    if (hit) return { name: hit.name, exact };
  }
  return null;
}
