// SentencePiece's precompiled normalisation rules (nmt_nfkc and friends), as stored in
// tokenizer.model (normalizer_spec.precompiled_charsmap): u32 trie size | darts-clone double-array trie over UTF-8 bytes |
// NUL-terminated replacement strings. At each position the longest key that matches wins and
// is replaced by its string; elsewhere a character stays as it is (normalizer.cc).

const MAX_TRIE_RESULTS = 32; // Normalizer::kMaxTrieResultsSize: later matches are not seen

export class CharsMap {
  private readonly units: Uint32Array;
  private readonly strings: Uint8Array;
  private readonly utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

  constructor(blob: Uint8Array, source: string) {
    const fail = (why: string): never => {
      throw new Error(`${source}: precompiled_charsmap: ${why}`);
    };
    if (blob.length <= 4) fail('too short');
    const view = new DataView(blob.buffer, blob.byteOffset, blob.length);
    const trieBytes = view.getUint32(0, true);
    if (trieBytes >= blob.length || trieBytes % 4 !== 0) fail(`trie size ${trieBytes} does not fit the ${blob.length}-byte blob`);
    this.units = new Uint32Array(trieBytes / 4);
    for (let i = 0; i < this.units.length; i++) this.units[i] = view.getUint32(4 + 4 * i, true);
    this.strings = blob.subarray(4 + trieBytes);
  }

  /**
   * The longest rule matching bytes[pos..]: [matched length in bytes, replacement] or null.
   * darts-clone's commonPrefixSearch, keeping the longest of the first 32 results.
   */
  match(bytes: Uint8Array, pos: number): [number, string] | null {
    const u = this.units;
    const offset = (unit: number) => (unit >>> 10) << ((unit & (1 << 9)) >>> 6);
    let node = offset(u[0]);
    let found = 0,
      bestLen = 0,
      bestValue = 0;
    for (let i = pos; i < bytes.length; i++) {
      node ^= bytes[i];
      const unit = u[node];
      if (unit === undefined || (unit & ((1 << 31) | 0xff)) !== bytes[i]) break;
      node ^= offset(unit);
      if ((unit >>> 8) & 1) {
        if (found < MAX_TRIE_RESULTS) {
          bestLen = i - pos + 1;
          bestValue = u[node] & 0x7fffffff;
        }
        found++;
      }
    }
    if (bestLen === 0) return null;
    let end = bestValue;
    while (end < this.strings.length && this.strings[end] !== 0) end++;
    return [bestLen, this.utf8.decode(this.strings.subarray(bestValue, end))];
  }
}
