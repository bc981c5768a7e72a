// A LLaMA-Factory dataset_info.json as a `chimed data build` source: it stands for one source
// per dataset it describes (all, or those listed in `datasets`), each read with the columns
// and tags of its entry. The other source settings (stages, encoding, maxRejectRate) apply to
// every one of them.
import path from 'node:path';
import { DataError } from './errors.js';
import { sourceName, type SourceConfig } from './build-config.js';
import type { Format } from './readers/format.js';
import { DATASET_INFO_FILE, entryFormat, readDatasetInfo } from './readers/llamafactory.js';

/** A source as the build opens it: a file, and the reader a dataset_info.json entry chose for it. */
export type OpenSource = SourceConfig & { reader?: Format };

export const isDatasetInfo = (file: string) => path.basename(file) === DATASET_INFO_FILE;

/**
 * Replaces each dataset_info.json source by its datasets' files, named after the dataset
 * (prefixed with the source's own name when it has one). Names stay unique across the build.
 */
export async function expandDatasetInfo(sources: SourceConfig[]): Promise<OpenSource[]> {
  const out: OpenSource[] = [];
  for (const [i, src] of sources.entries()) {
    if (!isDatasetInfo(src.path)) {
      if (src.datasets)
        throw new DataError(
          `sources[${i}] (${src.path}): "datasets" selects entries of a ${DATASET_INFO_FILE}; this source is a data file`,
        );
      out.push(src);
      continue;
    }
    if (src.format !== 'auto')
      throw new DataError(`sources[${i}] (${src.path}): drop "format": each dataset in ${DATASET_INFO_FILE} gives its own formatting`);
    for (const e of await readDatasetInfo(src.path, src.datasets)) {
      // dataset names become file names (eval_NAME.jsonl) and table rows
      const base = `${src.name ? `${src.name}.` : ''}${e.name.replace(/[^\w.-]/g, '_')}`;
      e.files.forEach((file, k) =>
        out.push({ ...src, path: file, name: e.files.length > 1 ? `${base}.${k + 1}` : base, datasets: undefined, reader: entryFormat(e) }),
      );
    }
  }
  const seen = new Map<string, string>();
  for (const s of out) {
    const name = sourceName(s);
    if (seen.has(name))
      throw new DataError(
        `two sources are named "${name}" (${seen.get(name)} and ${s.path}); give the ${DATASET_INFO_FILE} source a "name" to prefix its datasets`,
      );
    seen.set(name, s.path);
  }
  return out;
}
