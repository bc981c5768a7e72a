// Decides at build time whether to link OpenBLAS. A missing OpenBLAS must never fail the
// install: the addon then uses its built-in blocked GEMM, and we say so once.
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
    'chimed: OpenBLAS (cblas.h) not found; building with the built-in GEMM (slower). Install libopenblas-dev for full speed.\n',
  );
process.stdout.write(found ? '1' : '0');
