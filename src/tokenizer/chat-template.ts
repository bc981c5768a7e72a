// THE chat-template reader and renderer. A model's template is read from its tokenizer folder
// exactly as transformers reads it (chat_template.jinja, else tokenizer_config.json's
// `chat_template`, a Jinja string or a list of named templates) and used unchanged by training,
// evaluation, chat, the server and export. A model without one gets a built-in template only
// when it is chosen by name (--template NAME, or tokenizer.template in a run config); there is
// no silent fallback.

import fs from 'node:fs';
import path from 'node:path';
import { Template } from '@huggingface/jinja';

export type Role = 'system' | 'user' | 'assistant';
export interface ChatMessage {
  role: Role;
  content: string;
}

/** What the template needs of a tokenizer. */
export interface TemplateTokenizer {
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  tokenToId(token: string): number | undefined;
  readonly eosToken?: string | null;
  readonly bosToken?: string | null;
}

/**
 * Built-in templates, each a Jinja string exactly as it would sit in tokenizer_config.json,
 * so the template a model was trained with travels with it and renders identically in
 * transformers, llama.cpp and here. `stop` ends an assistant turn during generation.
 */
export const BUILTIN_TEMPLATES: Record<string, { template: string; stop: string[] }> = {
  chatml: {
    template:
      "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
      "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    stop: ['<|im_end|>'],
  },
  vicuna: {
    template:
      "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + ' ' }}" +
      "{% elif message['role'] == 'user' %}{{ 'USER: ' + message['content'] + ' ' }}" +
      "{% else %}{{ 'ASSISTANT: ' + message['content'] + eos_token }}{% endif %}{% endfor %}" +
      "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}",
    stop: ['</s>', '<|endoftext|>'],
  },
  // Llama-2-chat: each user turn is "<s>[INST] ... [/INST]", the system prompt sits in <<SYS>>
  // markers inside the first one, each answer ends with "</s>".
  llama2: {
    template:
      "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}{% set turns = messages[1:] %}" +
      "{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}" +
      "{% for message in turns %}{% if message['role'] == 'user' %}" +
      "{% if loop.first and system %}{% set content = '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}" +
      "{{ bos_token + '[INST] ' + content + ' [/INST]' }}" +
      "{% else %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}{% endfor %}",
    stop: ['</s>'],
  },
};

const BUILTIN_NAMES = () => Object.keys(BUILTIN_TEMPLATES).join(', ');

export class TemplateError extends Error {}

/**
 * Where a template came from, so that saving writes it back the same way: a string in
 * tokenizer_config.json, one entry of its named list, or chat_template.jinja.
 */
export type TemplateFile =
  | { form: 'config'; template: string }
  | { form: 'named'; template: string; name: string; list: { name: string; template: string }[] }
  | { form: 'jinja'; template: string };

/**
 * The one reader: the chat template of a tokenizer folder (null: a config without folder)
 * given its parsed tokenizer_config.json (null when absent). chat_template.jinja wins over the config, as in
 * transformers; of a named list, "default" is the plain-chat one. Null when there is none.
 */
export function readChatTemplate(dir: string | null, config: Record<string, unknown> | null): TemplateFile | null {
  const jinja = dir === null ? null : path.join(dir, 'chat_template.jinja');
  if (jinja && fs.existsSync(jinja)) return { form: 'jinja', template: fs.readFileSync(jinja, 'utf8') };
  const t = config?.chat_template;
  if (t === undefined || t === null) return null;
  const where = `${dir === null ? 'tokenizer_config' : path.join(dir, 'tokenizer_config.json')}: field chat_template`;
  if (typeof t === 'string') return t ? { form: 'config', template: t } : null;
  if (!Array.isArray(t)) throw new TemplateError(`${where}: expected a string or a list of {name, template}`);
  const list = t.map((x, i) => {
    const e = x as { name?: unknown; template?: unknown };
    if (typeof e?.name !== 'string' || typeof e.template !== 'string') throw new TemplateError(`${where}[${i}]: expected {name, template}`);
    return { name: e.name, template: e.template };
  });
  const chosen = list.find((x) => x.name === 'default') ?? (list.length === 1 ? list[0] : undefined);
  if (!chosen) throw new TemplateError(`${where}: named templates ${list.map((x) => x.name).join(', ')} and none is "default"`);
  return { form: 'named', template: chosen.template, name: chosen.name, list };
}

export class ChatTemplate {
  private readonly compiled: Template | null;

  /**
   * `file` is how save() writes the template; null for a model without one (`source` is then
   * empty and rendering throws, naming `where` and the built-ins).
   */
  private constructor(
    readonly source: string,
    readonly stop: string[],
    readonly name: string,
    readonly file: TemplateFile | null,
    private readonly where = '',
  ) {
    if (file === null) {
      this.compiled = null;
      return;
    }
    try {
      this.compiled = new Template(source);
    } catch (e) {
      throw new TemplateError(`chat template ${name}: does not parse: ${(e as Error).message}`);
    }
  }

  static builtin(name: string): ChatTemplate {
    const t = BUILTIN_TEMPLATES[name];
    if (!t) throw new TemplateError(`unknown chat template "${name}" (built-in: ${BUILTIN_NAMES()})`);
    return new ChatTemplate(t.template, t.stop, name, { form: 'config', template: t.template });
  }

  /** A template given as Jinja text; stops on the eos token and the end-of-turn markers it writes. */
  static custom(source: string, name = 'custom', eosToken?: string | null): ChatTemplate {
    return ChatTemplate.fromFile({ form: 'config', template: source }, name, eosToken);
  }

  private static fromFile(file: TemplateFile, name: string, eosToken?: string | null): ChatTemplate {
    const known = Object.entries(BUILTIN_TEMPLATES).find(([, t]) => t.template === file.template);
    if (known) return new ChatTemplate(file.template, known[1].stop, known[0], file);
    const markers = Object.values(BUILTIN_TEMPLATES)
      .flatMap((t) => t.stop)
      .filter((s) => file.template.includes(s));
    return new ChatTemplate(file.template, [...new Set([...(eosToken ? [eosToken] : []), ...markers])], name, file);
  }

  /**
   * The template to chat with a model: the built-in `name` when one is chosen, else the one
   * its tokenizer folder `where` holds (tok.chatTemplate, read by readChatTemplate), else a
   * template that refuses to render, saying how to choose one: commands that never render
   * (pre-training, perplexity, export of a base model) work without one.
   */
  static forModel(tok: { chatTemplate: TemplateFile | null; eosToken?: string | null }, where: string, name?: string): ChatTemplate {
    if (name) return ChatTemplate.builtin(name);
    if (tok.chatTemplate)
      return ChatTemplate.fromFile(
        tok.chatTemplate,
        tok.chatTemplate.form === 'jinja' ? path.join(where, 'chat_template.jinja') : path.join(where, 'tokenizer_config.json'),
        tok.eosToken,
      );
    return new ChatTemplate('', [], 'none', null, where);
  }

  /** Whether the model has a template (its own or a chosen built-in). */
  get present(): boolean {
    return this.compiled !== null;
  }

  render(messages: ChatMessage[], tok: TemplateTokenizer | null, addGenerationPrompt: boolean): string {
    if (!this.compiled) {
      throw new TemplateError(
        `${this.where}: the model has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja); ` +
          `choose a built-in one with --template NAME (or tokenizer.template in a run config): ${BUILTIN_NAMES()}`,
      );
    }
    return this.compiled.render({
      messages,
      add_generation_prompt: addGenerationPrompt,
      eos_token: tok?.eosToken ?? '',
      bos_token: tok?.bosToken ?? '',
    });
  }

  /**
   * Token ids of rendered text. The template writes every special token it wants (a BOS
   * included), so the tokenizer adds none, as transformers' apply_chat_template does.
   */
  private encode(tok: TemplateTokenizer, messages: ChatMessage[], addGenerationPrompt: boolean): number[] {
    return tok.encode(this.render(messages, tok, addGenerationPrompt), { addSpecialTokens: false });
  }

  /** Token ids of the prompt that asks the model for the next assistant turn (inference path). */
  encodePrompt(tok: TemplateTokenizer, messages: ChatMessage[]): number[] {
    return this.encode(tok, messages, true);
  }

  /**
   * Token ids of a whole conversation with labels: assistant tokens (their end-of-turn
   * marker included, so the model learns to stop) keep their id, everything else is -100
   * unless `trainOnPrompt`. `spans` are the [start, end) of each trained assistant turn. A
   * turn is trained only where its prompt encodes exactly as encodePrompt encodes it at
   * inference and the turn renders in the conversation as it renders when last: templates
   * that write history differently (Qwen3 drops the <think> block of earlier answers) leave
   * such earlier turns as context. The final turn must qualify, else this throws rather than
   * train on ids that inference never produces.
   */
  encodeConversation(
    tok: TemplateTokenizer,
    messages: ChatMessage[],
    trainOnPrompt = false,
  ): { ids: number[]; labels: number[]; spans: [number, number][] } {
    const ids = this.encode(tok, messages, false);
    const spans: [number, number][] = [];
    const last = messages.map((m) => m.role).lastIndexOf('assistant');
    for (let i = 0; i < messages.length; i++) {
      if (messages[i].role !== 'assistant') continue;
      const prompt = this.encodePrompt(tok, messages.slice(0, i));
      const upTo = i === messages.length - 1 ? ids : this.encode(tok, messages.slice(0, i + 1), false);
      if (startsWith(upTo, prompt) && startsWith(ids, upTo)) spans.push([prompt.length, upTo.length]);
      else if (i === last) {
        throw new TemplateError(
          `chat template ${this.name}: the tokens of the prompt before assistant turn ${i} are not a prefix of the conversation's tokens; ` +
            `the template and tokenizer would train on ids that inference never produces`,
        );
      }
    }
    const labels = trainOnPrompt ? ids.slice() : ids.map(() => -100);
    if (!trainOnPrompt) for (const [s0, s1] of spans) for (let t = s0; t < s1; t++) labels[t] = ids[t];
    return { ids, labels, spans };
  }

  /** Token ids that end generation: the template's stop strings that are single tokens, and eos. */
  stopIds(tok: TemplateTokenizer): number[] {
    const ids = [...this.stop, tok.eosToken ?? '']
      .map((s) => (s ? tok.tokenToId(s) : undefined))
      .filter((x): x is number => x !== undefined);
    return [...new Set(ids)];
  }
}

function startsWith(a: number[], prefix: number[]): boolean {
  return prefix.length <= a.length && prefix.every((x, i) => a[i] === x);
}
