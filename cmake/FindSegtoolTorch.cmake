# LibTorch discovery shared by CMakeLists.txt and scripts/torch-paths.mjs (binding.gyp):
# Torch_DIR / CMAKE_PREFIX_PATH as given, else a pip-installed torch, else the system's.
if(NOT Torch_DIR AND NOT DEFINED ENV{Torch_DIR})
  find_package(Python3 COMPONENTS Interpreter QUIET)
  foreach(py ${Python3_EXECUTABLE} python3 /usr/bin/python3)
    execute_process(COMMAND ${py} -c "import torch; print(torch.utils.cmake_prefix_path)"
                    OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
                    RESULT_VARIABLE _torch_rc ERROR_QUIET)
    if(_torch_rc EQUAL 0 AND _torch_prefix AND EXISTS "${_torch_prefix}/Torch/TorchConfig.cmake")
      list(APPEND CMAKE_PREFIX_PATH "${_torch_prefix}")
      break()
    endif()
  endforeach()
endif()
find_package(Torch REQUIRED)
get_filename_component(SEGTOOL_TORCH_LIBDIR "${TORCH_LIBRARY}" DIRECTORY)
