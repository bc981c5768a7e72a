// Decides at build time whether to link OpenBLAS as a second GEMM path beside the built-in one
// (src/engine/gemm-choice.ts measures both and uses the faster per shape class). A missing
// OpenBLAS must never fail the install: the addon then has the built-in GEMM only, and we say so.
const fs = require('node:fs');
const dirs = [
  '/usr/include/x86_64-linux-gnu',
  '/usr/include/aarch64-linux-gnu',
  '/usr/include',
  '/usr/include/openblas',
  '/usr/local/include',
  '/opt/homebrew/opt/openblas/include',
];
const found = process.env.CHIMED_NO_BLAS ? undefined : dirs.find((d) => fs.existsSync(`${d}/cblas.h`));
if (!found)
  process.stderr.write(
    'chimed: OpenBLAS (cblas.h) not found; building with the built-in GEMM only. Install libopenblas-dev to let chimed also measure OpenBLAS (faster than the built-in GEMM on some CPUs).\n',
  );
process.stdout.write(found ? '1' : '0');
