// Report charts: a Vega-Lite spec is compiled to Vega, rendered headless to SVG (vega's
// 'none' renderer needs no DOM or canvas), then rasterised to PNG by resvg with the system
// fonts. Chinese labels need a CJK font on the machine (Debian: fonts-wqy-zenhei or
// fonts-noto-cjk); resvg falls back to it glyph by glyph from the Latin font named first.
import { spawnSync } from 'node:child_process';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

const FONT = 'DejaVu Sans, WenQuanYi Zen Hei, Noto Sans CJK SC, Noto Sans SC, sans-serif';

// Without a canvas vega guesses text width as 0.8 em per UTF-16 unit, which clips CJK
// legends and titles (a CJK glyph is 1 em) and over-reserves Latin ones. This estimate, per
// code point, is close enough for DejaVu Sans plus a CJK fallback font.
const WIDE = /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6\u{20000}-\u{3fffd}]/u;
function estimateTextWidth(item: { fontSize?: number }, text: unknown): number {
  const size = item.fontSize ?? 11;
  const lines = Array.isArray(text) ? text.map(String) : [String(text ?? '')];
  let widest = 0;
  for (const line of lines) {
    let em = 0;
    for (const ch of line) em += WIDE.test(ch) ? 1 : /[ilj.,:;'|!]/.test(ch) ? 0.3 : 0.62;
    widest = Math.max(widest, em * size);
  }
  return widest;
}
// textMetrics is exported by vega-scenegraph but missing from vega's typings
(vega as unknown as { textMetrics: { width: typeof estimateTextWidth } }).textMetrics.width = estimateTextWidth;

export interface ChartImage {
  svg: string;
  png: Buffer;
  /** The Vega-Lite spec drawn, for a report that wants to embed it interactively. */
  spec: TopLevelSpec;
}

export interface RenderOptions {
  /** PNG pixels per SVG pixel. */
  scale?: number;
}

/** Any Vega-Lite spec to SVG and PNG (white background, the report's fonts). */
export async function renderVegaLite(spec: TopLevelSpec, opts: RenderOptions = {}): Promise<ChartImage> {
  const full = { ...spec, config: { font: FONT, ...(spec.config ?? {}) } } as TopLevelSpec;
  const view = new vega.View(vega.parse(compile(full).spec), { renderer: 'none' });
  try {
    const svg = await view.toSVG();
    return { svg, png: svgToPng(svg, opts), spec: full };
  } finally {
    view.finalize();
  }
}

/** Rasterises an SVG on white with the system fonts. */
export function svgToPng(svg: string, opts: RenderOptions = {}): Buffer {
  return new Resvg(svg, {
    background: 'white',
    fitTo: { mode: 'zoom', value: opts.scale ?? 2 },
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
  })
    .render()
    .asPng();
}

export interface Series {
  name: string;
  points: [number, number][];
}

export interface LineChartSpec {
  title: string;
  /** Axis titles. */
  x: string;
  y: string;
  series: Series[];
  width?: number;
  height?: number;
  /** Log scale for y (loss and perplexity curves). */
  logY?: boolean;
  /** Start the y axis at zero (default false: curves are read for their shape). */
  yZero?: boolean;
  /** One small panel per series with its own axes (series of different quantities or step ranges). */
  facet?: boolean;
}

const size = (s: { width?: number; height?: number }) => ({ width: s.width ?? 560, height: s.height ?? 300 });

function checkNames(names: string[], what: string): void {
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw new Error(`${what}: duplicate name ${JSON.stringify(dup)}`);
}

export function lineChart(s: LineChartSpec, opts?: RenderOptions): Promise<ChartImage> {
  if (s.series.length === 0) throw new Error(`lineChart "${s.title}": no series`);
  checkNames(
    s.series.map((x) => x.name),
    `lineChart "${s.title}" series`,
  );
  // a diverged run logs NaN/Infinity; the curve stops there rather than the report failing
  const values = s.series.flatMap((ser) =>
    ser.points
      .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!s.logY || y > 0))
      .map(([x, y]) => ({ series: ser.name, x, y })),
  );
  const order = s.series.map((x) => x.name);
  const mark = { type: 'line', point: values.length <= 60, strokeWidth: 2 } as const;
  const encoding = {
    x: { field: 'x', type: 'quantitative', title: s.x },
    y: {
      field: 'y',
      type: 'quantitative',
      title: s.y,
      scale: s.logY ? { type: 'log' as const } : { type: 'linear' as const, zero: s.yZero ?? false },
    },
    color: { field: 'series', type: 'nominal', title: null, sort: order, scale: { domain: order }, legend: s.facet ? null : {} },
  } as const;
  if (s.facet) {
    const { width, height } = size(s);
    const columns = Math.min(order.length, 3);
    return renderVegaLite(
      {
        title: s.title,
        data: { values },
        facet: { field: 'series', type: 'nominal', title: null, sort: order },
        columns,
        spec: { width: Math.floor(width / columns) - 30, height: Math.floor(height / 1.6), mark, encoding },
        resolve: { scale: { x: 'independent', y: 'independent' } },
      },
      opts,
    );
  }
  return renderVegaLite({ title: s.title, ...size(s), data: { values }, mark, encoding }, opts);
}

/** A 95% interval drawn on a bar: [lo, hi] in the bar's units. */
export type ErrorBar = [number, number] | null | undefined;

export interface BarChartSpec {
  title: string;
  x: string;
  y: string;
  bars: { label: string; value: number; ci?: ErrorBar }[];
  width?: number;
  height?: number;
}

export function barChart(s: BarChartSpec, opts?: RenderOptions): Promise<ChartImage> {
  if (s.bars.length === 0) throw new Error(`barChart "${s.title}": no bars`);
  checkNames(
    s.bars.map((b) => b.label),
    `barChart "${s.title}" bars`,
  );
  return renderVegaLite(
    {
      title: s.title,
      ...size(s),
      // the label sits above the bar, or above its whisker
      data: {
        values: s.bars
          .filter((b) => Number.isFinite(b.value))
          .map((b) => ({ ...b, ...bounds(b.ci), top: Math.max(b.value, b.ci?.[1] ?? -Infinity) })),
      },
      layer: [
        { mark: { type: 'bar', color: '#4c78a8' } },
        ...errorRules(s.bars.some((b) => b.ci)),
        {
          mark: { type: 'text', dy: -6, fontSize: 11 },
          encoding: { y: { field: 'top', type: 'quantitative' }, text: { field: 'value', type: 'quantitative', format: '.3~f' } },
        },
      ],
      encoding: {
        x: { field: 'label', type: 'nominal', title: s.x, sort: s.bars.map((b) => b.label), axis: { labelAngle: 0 } },
        y: { field: 'value', type: 'quantitative', title: s.y },
      },
    },
    opts,
  );
}

const bounds = (ci: ErrorBar) => (ci ? { lo: ci[0], hi: ci[1] } : {});

/** Interval whiskers on bars whose data carry lo / hi. */
function errorRules(any: boolean) {
  if (!any) return [];
  return [
    {
      mark: { type: 'rule', color: '#222', strokeWidth: 1.5 },
      encoding: { y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' } },
    },
  ] as const;
}

export interface GroupedBarChartSpec {
  title: string;
  x: string;
  y: string;
  /** The groups along x (metrics, subscales). */
  categories: string[];
  /** One bar per series in each group (stages, models); values (and intervals) align with categories. */
  series: { name: string; values: number[]; ci?: ErrorBar[] }[];
  width?: number;
  height?: number;
}

export function groupedBarChart(s: GroupedBarChartSpec, opts?: RenderOptions): Promise<ChartImage> {
  if (s.categories.length === 0 || s.series.length === 0) throw new Error(`groupedBarChart "${s.title}": needs categories and series`);
  checkNames(s.categories, `groupedBarChart "${s.title}" categories`);
  checkNames(
    s.series.map((x) => x.name),
    `groupedBarChart "${s.title}" series`,
  );
  for (const ser of s.series) {
    if (ser.values.length !== s.categories.length) {
      throw new Error(
        `groupedBarChart "${s.title}": series ${JSON.stringify(ser.name)} has ${ser.values.length} values for ${s.categories.length} categories`,
      );
    }
  }
  const order = s.series.map((x) => x.name);
  const values = s.series
    .flatMap((ser) => ser.values.map((value, i) => ({ category: s.categories[i], series: ser.name, value, ...bounds(ser.ci?.[i]) })))
    .filter((v) => Number.isFinite(v.value));
  return renderVegaLite(
    {
      title: s.title,
      ...size(s),
      data: { values },
      encoding: {
        x: { field: 'category', type: 'nominal', title: s.x, sort: s.categories, axis: { labelAngle: 0 } },
        xOffset: { field: 'series', type: 'nominal', sort: order },
      },
      layer: [
        {
          mark: 'bar',
          encoding: {
            y: { field: 'value', type: 'quantitative', title: s.y },
            color: { field: 'series', type: 'nominal', title: null, sort: order, scale: { domain: order } },
          },
        },
        ...errorRules(s.series.some((x) => x.ci?.some(Boolean))),
      ],
    },
    opts,
  );
}

/** The installed font families that cover Chinese (fontconfig's view); empty when none or no fc-list. */
export function cjkFontFamilies(): string[] {
  const r = spawnSync('fc-list', [':lang=zh', 'family'], { encoding: 'utf8' });
  if (r.status !== 0 || !r.stdout) return [];
  return [
    ...new Set(
      r.stdout
        .split('\n')
        .map((l) => l.split(',')[0].trim())
        .filter(Boolean),
    ),
  ];
}
