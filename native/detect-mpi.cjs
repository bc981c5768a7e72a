// Decides at build time whether the MPI binding (native/mpi/mpi.cc) links an MPI library.
// The compile and link flags come from the MPI's own compiler wrapper: Open MPI's
// `mpicc -showme:compile|link`, else MPICH's `mpicc -show`. No MPI never fails the install:
// the binding is then built without it, and `chimed --version` says so.
//   node native/detect-mpi.cjs           -> 1 or 0
//   node native/detect-mpi.cjs --cflags  -> the -I flags (nothing without MPI)
//   node native/detect-mpi.cjs --libs    -> the -L / -l flags, with an rpath for each -L
// CHIMED_NO_MPI=1 builds without MPI even where it is installed.
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');

function wrapper(args) {
  try {
    return execFileSync(process.env.MPICC || 'mpicc', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .trim()
      .split(/\s+/);
  } catch {
    return null;
  }
}

function detect() {
  if (process.env.CHIMED_NO_MPI) return null;
  const ompi = wrapper(['-showme:compile']);
  const words = ompi ? [...ompi, ...(wrapper(['-showme:link']) ?? [])] : (wrapper(['-show']) ?? []).slice(1);
  const cflags = words.filter((w) => w.startsWith('-I'));
  const libs = words.filter((w) => /^-[Ll]/.test(w) || w.startsWith('-Wl,'));
  const header = cflags.map((f) => f.slice(2)).find((d) => fs.existsSync(`${d}/mpi.h`));
  if (!header || !libs.some((w) => w.startsWith('-lmpi'))) return null;
  const rpaths = libs.filter((w) => w.startsWith('-L')).map((w) => `-Wl,-rpath,${w.slice(2)}`);
  return { cflags, libs: [...libs, ...rpaths] };
}

const found = detect();
const what = process.argv[2];
if (what === '--cflags') process.stdout.write(found ? found.cflags.join(' ') : '');
else if (what === '--libs') process.stdout.write(found ? found.libs.join(' ') : '');
else {
  if (!found)
    process.stderr.write(
      `chimed: ${process.env.CHIMED_NO_MPI ? 'CHIMED_NO_MPI is set' : 'MPI (mpicc and mpi.h) not found'}; building without MPI ` +
        '(one process per run). Install openmpi-bin libopenmpi-dev for data-parallel training with mpirun.\n',
    );
  process.stdout.write(found ? '1' : '0');
}
