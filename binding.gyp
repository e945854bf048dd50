{
  # node-gyp build of the same sources as CMakeLists.txt, CPU only (`npm run build:gyp`).
  # LibTorch is found by the same CMake logic (scripts/torch-paths.mjs).
  "targets": [
    {
      "target_name": "segtool",
      "sources": [
        "<!@(node -e \"const fs=require('fs');for(const d of ['native/binding','native/nn','native/ops','native/ops/cpu','native/io','native/distributed'])if(fs.existsSync(d))for(const f of fs.readdirSync(d).sort())if(f.endsWith('.cc'))console.log(d+'/'+f)\")"
      ],
      "include_dirs": [
        "native",
        "<!(node -p \"require('path').dirname(require.resolve('node-addon-api/package.json'))\")",
        "<!@(node scripts/torch-paths.mjs include)"
      ],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS", "<!@(node scripts/torch-paths.mjs defines)"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-fvisibility=hidden", "-O2", "-Wno-unused-parameter", "<!@(node scripts/torch-paths.mjs cflags)"],
      "libraries": [
        "-Wl,--no-as-needed",
        "<!@(node scripts/torch-paths.mjs libs)",
        "-Wl,-rpath,<!(node scripts/torch-paths.mjs libdir)",
        "-lz"
      ]
    }
  ]
}
