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
  encode(text: string): number[];
  tokenToId(token: string): number | undefined;
  readonly eosToken?: string | null;
  readonly bosToken?: string | null;
}

/**
 * Built-in templates, each a Jinja string exactly as it would sit in tokenizer_config.json,
 * so the template a model was trained with travels with it and renders identically in
 * transformers, llama.cpp and here. `stop` ends an assistant turn during generation.
 */
export const BUILTIN_TEMPLATES: Record<string, { template: string; stop: string[]; defaultSystem?: string }> = {
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
};

export class TemplateError extends Error {}

export class ChatTemplate {
  private readonly compiled: Template;

  constructor(readonly source: string, readonly stop: string[], readonly name = 'custom') {
    try {
      this.compiled = new Template(source);
    } catch (e) {
      throw new TemplateError(`chat template ${name}: does not parse: ${(e as Error).message}`);
    }
  }

  static builtin(name: string): ChatTemplate {
    const t = BUILTIN_TEMPLATES[name];
    if (!t) throw new TemplateError(`unknown chat template "${name}" (built-in: ${Object.keys(BUILTIN_TEMPLATES).join(', ')})`);
    return new ChatTemplate(t.template, t.stop, name);
  }

  /**
   * The template of a model folder: `chat_template` from tokenizer_config.json (a Jinja
   * string), else the built-in `fallback`. A custom template stops on its eos_token and on
   * any built-in end-of-turn marker its text contains (Qwen's templates use <|im_end|>).
   */
  static fromDir(dir: string, fallback = 'chatml'): ChatTemplate {
    const file = path.join(dir, 'tokenizer_config.json');
    if (!fs.existsSync(file)) return ChatTemplate.builtin(fallback);
    const cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
    const src = cfg.chat_template;
    if (typeof src !== 'string' || !src) return ChatTemplate.builtin(fallback);
    const known = Object.entries(BUILTIN_TEMPLATES).find(([, t]) => t.template === src);
    if (known) return ChatTemplate.builtin(known[0]);
    const eos = typeof cfg.eos_token === 'string' ? cfg.eos_token : cfg.eos_token?.content;
    const markers = Object.values(BUILTIN_TEMPLATES).flatMap((t) => t.stop).filter((s) => src.includes(s));
    return new ChatTemplate(src, [...new Set([...(eos ? [eos] : []), ...markers])], file);
  }

  render(messages: ChatMessage[], tok: TemplateTokenizer | null, addGenerationPrompt: boolean): string {
    return this.compiled.render({
      messages, add_generation_prompt: addGenerationPrompt,
      eos_token: tok?.eosToken ?? '', bos_token: tok?.bosToken ?? '',
    });
  }

  /** Token ids of the prompt that asks the model for the next assistant turn (inference path). */
  encodePrompt(tok: TemplateTokenizer, messages: ChatMessage[]): number[] {
    return tok.encode(this.render(messages, tok, true));
  }

  /**
   * Token ids of a whole conversation with labels: assistant tokens (their end-of-turn
   * marker included, so the model learns to stop) keep their id, everything else is -100
   * unless `trainOnPrompt`. `spans` are the [start, end) of each assistant turn. Each turn's
   * prompt is encoded exactly as encodePrompt would encode it at inference; if the template
   * or tokenizer breaks that prefix property we stop with an error instead of training on
   * ids inference never produces.
   */
  encodeConversation(tok: TemplateTokenizer, messages: ChatMessage[], trainOnPrompt = false): { ids: number[]; labels: number[]; spans: [number, number][] } {
    const ids = tok.encode(this.render(messages, tok, false));
    const spans: [number, number][] = [];
    for (let i = 0; i < messages.length; i++) {
      if (messages[i].role !== 'assistant') continue;
      const prompt = this.encodePrompt(tok, messages.slice(0, i));
      const upTo = tok.encode(this.render(messages.slice(0, i + 1), tok, false));
      if (!startsWith(upTo, prompt) || !startsWith(ids, upTo)) {
        throw new TemplateError(`chat template ${this.name}: the tokens of the prompt before assistant turn ${i} are not a prefix of the conversation's tokens; ` +
          `the template and tokenizer would train on ids that inference never produces`);
      }
      spans.push([prompt.length, upTo.length]);
    }
    const labels = trainOnPrompt ? ids.slice() : ids.map(() => -100);
    if (!trainOnPrompt) for (const [s0, s1] of spans) for (let t = s0; t < s1; t++) labels[t] = ids[t];
    return { ids, labels, spans };
  }

  /** Token ids that end generation: the template's stop strings that are single tokens. */
  stopIds(tok: TemplateTokenizer): number[] {
    const ids = [...this.stop, tok.eosToken ?? ''].map((s) => (s ? tok.tokenToId(s) : undefined)).filter((x): x is number => x !== undefined);
    return [...new Set(ids)];
  }
}

function startsWith(a: number[], prefix: number[]): boolean {
  return prefix.length <= a.length && prefix.every((x, i) => a[i] === x);
}
