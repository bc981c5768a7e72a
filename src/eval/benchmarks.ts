// Published figures of the two papers this project follows, printed beside a run's own
// numbers when an evaluation file is tagged with the benchmark it comes from. They are for
// orientation only: different models (7B / 13B against a small CPU model), data and prompts.
//
// Sources:
//   Qilin-Med: Ye, Liu, Chong, Zhou, Hua, Liu et al., "Qilin-Med: Multi-stage Knowledge
//     Injection Advanced Medical Large Language Model", arXiv:2310.09089 (2023). 7B, trained
//     from Baichuan-7B; CMExam test accuracy, Huatuo-26M test BLEU / ROUGE. The GPT2 and T5
//     rows are the small fine-tuned baselines it lists on Huatuo-26M.
//   ChiMed-GPT: Tian, Gan, Song, Zhang, Zhang, "ChiMed-GPT: A Chinese Medical Large Language
//     Model with Full Training Regime and Better Alignment to Human Preferences",
//     arXiv:2311.06025 (2023). 13B, trained from Ziya-13B-v2; C-Eval, CMMLU and MedQA
//     accuracy, CCKS-2019 NER F1 (few-shot).

/** Which evaluation file a benchmark's items go in. */
export const BENCHMARKS = {
  cmexam: { file: 'mcq', title: 'CMExam' },
  'ceval-med': { file: 'mcq', title: 'C-Eval (medical)' },
  'cmmlu-med': { file: 'mcq', title: 'CMMLU (medical)' },
  medqa: { file: 'mcq', title: 'MedQA' },
  huatuo26m: { file: 'gen', title: 'Huatuo-26M test' },
  ccks2019: { file: 'ner', title: 'CCKS-2019 NER' },
} as const;

export type BenchmarkName = keyof typeof BENCHMARKS;
export const BENCHMARK_NAMES = Object.keys(BENCHMARKS) as [BenchmarkName, ...BenchmarkName[]];

export interface PublishedFigure {
  benchmark: BenchmarkName;
  model: string;
  /** Parameter count as the paper gives it, or how the model was trained. */
  size: string;
  /** Metric name as in our summary table. */
  metric: string;
  /** As printed in the paper: percent for accuracy and F1, 0-100 for BLEU / ROUGE. */
  value: number;
  source: 'Qilin-Med' | 'ChiMed-GPT';
}

export const CITATIONS: Record<PublishedFigure['source'], string> = {
  'Qilin-Med': 'Ye et al., Qilin-Med: Multi-stage Knowledge Injection Advanced Medical Large Language Model, arXiv:2310.09089, 2023',
  'ChiMed-GPT':
    'Tian et al., ChiMed-GPT: A Chinese Medical Large Language Model with Full Training Regime and Better Alignment to Human Preferences, arXiv:2311.06025, 2023',
};

const qilin = (benchmark: BenchmarkName, model: string, size: string, metric: string, value: number): PublishedFigure => ({
  benchmark,
  model,
  size,
  metric,
  value,
  source: 'Qilin-Med',
});
const chimed = (benchmark: BenchmarkName, metric: string, value: number): PublishedFigure => ({
  benchmark,
  model: 'ChiMed-GPT',
  size: '13B',
  metric,
  value,
  source: 'ChiMed-GPT',
});

export const PUBLISHED: readonly PublishedFigure[] = [
  qilin('cmexam', 'Baichuan-7B (base)', '7B', 'MCQ acc (%)', 33.5),
  qilin('cmexam', 'Qilin-Med CPT', '7B', 'MCQ acc (%)', 38.4),
  qilin('cmexam', 'Qilin-Med SFT', '7B', 'MCQ acc (%)', 40.0),
  qilin('huatuo26m', 'Qilin-Med CPT', '7B', 'BLEU-1', 10.63),
  qilin('huatuo26m', 'Qilin-Med SFT', '7B', 'BLEU-1', 12.69),
  qilin('huatuo26m', 'Qilin-Med SFT', '7B', 'ROUGE-1', 24.21),
  qilin('huatuo26m', 'Qilin-Med DPO', '7B', 'BLEU-1', 16.66),
  qilin('huatuo26m', 'Qilin-Med DPO', '7B', 'ROUGE-1', 27.44),
  qilin('huatuo26m', 'GPT2', 'small, fine-tuned', 'BLEU-1', 23.42),
  qilin('huatuo26m', 'GPT2', 'small, fine-tuned', 'ROUGE-1', 30.48),
  qilin('huatuo26m', 'GPT2', 'small, fine-tuned', 'ROUGE-L', 23.15),
  qilin('huatuo26m', 'T5', 'small, fine-tuned', 'BLEU-1', 26.63),
  qilin('huatuo26m', 'T5', 'small, fine-tuned', 'ROUGE-L', 24.85),
  chimed('ceval-med', 'MCQ acc (%)', 68.29),
  chimed('cmmlu-med', 'MCQ acc (%)', 52.92),
  chimed('medqa', 'MCQ acc (%)', 44.5),
  chimed('ccks2019', 'NER F1 (%, few-shot)', 40.82),
];

export function publishedFigures(benchmark: BenchmarkName): PublishedFigure[] {
  return PUBLISHED.filter((f) => f.benchmark === benchmark);
}
