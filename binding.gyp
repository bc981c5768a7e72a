{
  "variables": { "has_openblas%": "<!(node native/detect-openblas.cjs)" },
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
  }]
}
