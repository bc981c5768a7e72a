{
  "variables": { "has_openblas%": "<!(node native/detect-openblas.cjs)", "has_mpi%": "<!(node native/detect-mpi.cjs)" },
  "targets": [{
    "target_name": "chimed_native",
    "sources": ["<!@(node -p \"require('fs').readdirSync('native').filter(f=>f.endsWith('.cc')).map(f=>'native/'+f).join(' ')\")"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
    "cflags_cc": ["-std=c++17", "-O3", "-march=native", "-fopenmp", "-ffp-contract=fast", "-fno-math-errno"],
    "ldflags": ["-fopenmp"],
    "conditions": [
      ["has_openblas==1", { "defines": ["CHIMED_OPENBLAS=1"], "libraries": ["-lopenblas"] }]
    ]
  }, {
    "target_name": "chimed_mpi",
    "sources": ["native/mpi/mpi.cc"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
    "cflags_cc": ["-std=c++17", "-O2"],
    "conditions": [
      ["has_mpi==1", {
        "defines": ["CHIMED_MPI=1"],
        "cflags_cc": ["<!@(node native/detect-mpi.cjs --cflags)"],
        "libraries": ["<!@(node native/detect-mpi.cjs --libs)", "-ldl"]
      }]
    ]
  }]
}
