# CMake package for the msf-runtime C API, installed by scripts/install-capi into
# <prefix>/lib/cmake/msf_runtime/. Relocatable: paths are found from this file's location.
#
#   find_package(msf_runtime 0.1 REQUIRED)
#   target_link_libraries(my_node PRIVATE msf_runtime::msf_runtime)         # shared library
#   target_link_libraries(my_node PRIVATE msf_runtime::msf_runtime_static)  # static, if installed
#
# Both targets carry the include directory (msf_runtime.h, msf_runtime.hpp).

get_filename_component(_msf_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(_msf_libdir "${_msf_prefix}/lib")
set(_msf_incdir "${_msf_prefix}/include")

if(NOT EXISTS "${_msf_incdir}/msf_runtime.h")
  set(msf_runtime_FOUND FALSE)
  set(msf_runtime_NOT_FOUND_MESSAGE "msf_runtime.h is not in ${_msf_incdir}: reinstall with scripts/install-capi")
  return()
endif()

if(NOT TARGET msf_runtime::msf_runtime AND EXISTS "${_msf_libdir}/libmsf_runtime.so")
  add_library(msf_runtime::msf_runtime SHARED IMPORTED)
  # The real file carries the SONAME; programs record that name, found through their RPATH or the
  # loader's search path.
  file(GLOB _msf_real "${_msf_libdir}/libmsf_runtime.so.*.*.*")
  if(_msf_real)
    list(GET _msf_real 0 _msf_real)
  else()
    set(_msf_real "${_msf_libdir}/libmsf_runtime.so")
  endif()
  set_target_properties(msf_runtime::msf_runtime PROPERTIES
    IMPORTED_LOCATION "${_msf_real}"
    INTERFACE_INCLUDE_DIRECTORIES "${_msf_incdir}")
  unset(_msf_real)
endif()

if(NOT TARGET msf_runtime::msf_runtime_static AND EXISTS "${_msf_libdir}/libmsf_runtime.a")
  find_package(Threads REQUIRED)
  add_library(msf_runtime::msf_runtime_static STATIC IMPORTED)
  # What a Rust static library needs from the system (`cargo rustc --crate-type staticlib --
  # --print native-static-libs`: -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc).
  set_target_properties(msf_runtime::msf_runtime_static PROPERTIES
    IMPORTED_LOCATION "${_msf_libdir}/libmsf_runtime.a"
    IMPORTED_LINK_INTERFACE_LANGUAGES "C"
    INTERFACE_INCLUDE_DIRECTORIES "${_msf_incdir}"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;${CMAKE_DL_LIBS};m;rt;util")
  if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
    # tract's assembly kernels carry no .note.GNU-stack; keep the stack non-executable (rustc does
    # the same for the shared library).
    set_property(TARGET msf_runtime::msf_runtime_static APPEND PROPERTY INTERFACE_LINK_OPTIONS "LINKER:-z,noexecstack")
  endif()
endif()

if(NOT TARGET msf_runtime::msf_runtime AND TARGET msf_runtime::msf_runtime_static)
  add_library(msf_runtime::msf_runtime INTERFACE IMPORTED)
  set_target_properties(msf_runtime::msf_runtime PROPERTIES INTERFACE_LINK_LIBRARIES msf_runtime::msf_runtime_static)
endif()

if(NOT TARGET msf_runtime::msf_runtime)
  set(msf_runtime_FOUND FALSE)
  set(msf_runtime_NOT_FOUND_MESSAGE "no libmsf_runtime.so or libmsf_runtime.a in ${_msf_libdir}")
  return()
endif()

set(msf_runtime_INCLUDE_DIRS "${_msf_incdir}")
set(msf_runtime_LIBRARIES msf_runtime::msf_runtime)
unset(_msf_prefix)
unset(_msf_libdir)
unset(_msf_incdir)
