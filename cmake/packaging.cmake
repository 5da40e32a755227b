# cmake/packaging.cmake — what a deployment gets (included from the top-level CMakeLists.txt, after the
# install rules). docs/jetson.md, section "Packaging".
#
#   1. The bundled model, packed at build time: models/hybrid (the default trained model) -> em-pack ->
#      <build>/bundled/hybrid.emb, installed as share/edgemamba/models/hybrid.emb. In a cross build em-pack
#      runs under CMAKE_CROSSCOMPILING_EMULATOR (qemu-aarch64); the blob is the same bytes on every host.
#   2. CPack .deb: one package "edgemamba" per architecture (amd64 from the host build, arm64 from the
#      aarch64-cpu / jetson-* presets, whose toolchain sets CPACK_DEBIAN_PACKAGE_ARCHITECTURE): the shared and
#      static library, edgemamba.h, the CMake package and pkg-config files, em-pack / em-plan / em-generate /
#      em-chat / em-bench, and the bundled model. Installed under /usr.
#        cmake --build build/cpu && (cd build/cpu && cpack -G DEB)      -> edgemamba_0.1.0_amd64.deb
#   3. The deployment image: a rootfs overlay tarball (target deploy-image) with /opt/edgemamba (the same
#      install tree plus the model), /etc/edgemamba/assistant.conf, and systemd units that start the configured
#      assistant (em-chat) on a local socket (deploy/).
#        cmake --build build/cpu --target deploy-image                  -> edgemamba-rootfs-0.1.0-amd64.tar.gz
option(EM_BUNDLE_MODEL "Pack models/hybrid into the build and install it (share/edgemamba/models)" ON)

# ---- 1. the bundled model --------------------------------------------------------------------------------
set(EM_BUNDLED_MODEL ${CMAKE_BINARY_DIR}/bundled/hybrid.emb)
if(EM_BUNDLE_MODEL AND TARGET em-pack AND EXISTS ${CMAKE_SOURCE_DIR}/models/hybrid/config.json)
  file(GLOB em_bundled_inputs ${CMAKE_SOURCE_DIR}/models/hybrid/*)
  # (add_custom_command puts CMAKE_CROSSCOMPILING_EMULATOR in front of a target's path itself)
  add_custom_command(OUTPUT ${EM_BUNDLED_MODEL}
                     COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/bundled
                     COMMAND em-pack ${CMAKE_SOURCE_DIR}/models/hybrid -o ${EM_BUNDLED_MODEL}
                     DEPENDS em-pack ${em_bundled_inputs}
                     COMMENT "Packing the bundled model (models/hybrid -> bundled/hybrid.emb)" VERBATIM)
  add_custom_target(em_bundled_model ALL DEPENDS ${EM_BUNDLED_MODEL})
  install(FILES ${EM_BUNDLED_MODEL} DESTINATION ${CMAKE_INSTALL_DATADIR}/edgemamba/models)
  install(FILES ${CMAKE_SOURCE_DIR}/models/README.md DESTINATION ${CMAKE_INSTALL_DATADIR}/edgemamba/models
          RENAME MODEL_CARD.md)
endif()
install(FILES ${CMAKE_SOURCE_DIR}/LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME copyright)

# ---- 2. CPack .deb -----------------------------------------------------------------------------------------
if(NOT CPACK_DEBIAN_PACKAGE_ARCHITECTURE) # the toolchain files of cross builds set it (arm64)
  find_program(EM_DPKG dpkg)
  if(EM_DPKG)
    execute_process(COMMAND ${EM_DPKG} --print-architecture OUTPUT_VARIABLE CPACK_DEBIAN_PACKAGE_ARCHITECTURE
                    OUTPUT_STRIP_TRAILING_WHITESPACE)
  else()
    set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE amd64)
  endif()
endif()
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME edgemamba)
set(CPACK_PACKAGE_VENDOR "edgemamba")
set(CPACK_PACKAGE_CONTACT "edgemamba maintainers <edgemamba@example.invalid>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Mamba-2 / hybrid LLM inference runtime in C and CUDA, with a bundled model")
set(CPACK_PACKAGE_DESCRIPTION "edgemamba runs Mamba-2, Mamba-2-Hybrid, Mamba-1 and Transformer language models in fixed memory on CPUs and NVIDIA GPUs (Jetson Orin and Thor, H100). This package holds the library (shared and static), its header, CMake and pkg-config files, the tools em-pack, em-plan, em-generate, em-chat and em-bench, and a small bundled model (share/edgemamba/models/hybrid.emb).")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # edgemamba_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE ${PROJECT_HOMEPAGE_URL})
# Runtime dependencies by name (Debian 12 / Ubuntu 22.04+ names). Not dpkg-shlibdeps: it cannot resolve an
# arm64 library that is not installed on the x86_64 build host (SentencePiece is only unpacked there).
set(em_deb_depends "libc6, libstdc++6, libgomp1, libxxhash0, libcjson1, libsentencepiece0, libutf8proc2, libpcre2-8-0")
if(EM_HAVE_CUDA)
  # NVIDIA's package names for the toolkit the build used (JetPack's apt repo carries the same names)
  string(REGEX MATCH "^([0-9]+)\\.([0-9]+)" _v "${CUDAToolkit_VERSION}")
  string(APPEND em_deb_depends ", cuda-cudart-${CMAKE_MATCH_1}-${CMAKE_MATCH_2}, libcublas-${CMAKE_MATCH_1}-${CMAKE_MATCH_2}")
endif()
set(CPACK_DEBIAN_PACKAGE_DEPENDS "${em_deb_depends}")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS OFF)
set(CPACK_SOURCE_GENERATOR "")
include(CPack)

# ---- 3. the deployment image (rootfs overlay tarball) ----------------------------------------------------------
set(EM_DEPLOY_IMAGE ${CMAKE_BINARY_DIR}/edgemamba-rootfs-${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_ARCHITECTURE}.tar.gz)
add_custom_target(deploy-image
                  COMMAND ${CMAKE_COMMAND} -DBUILD_DIR=${CMAKE_BINARY_DIR} -DSOURCE_DIR=${CMAKE_SOURCE_DIR}
                          -DOUT=${EM_DEPLOY_IMAGE} -P ${CMAKE_SOURCE_DIR}/deploy/make-image.cmake
                  COMMENT "Deployment image: ${EM_DEPLOY_IMAGE}" VERBATIM)
if(TARGET em_bundled_model)
  add_dependencies(deploy-image em_bundled_model)
endif()
foreach(t edgemamba em-chat em-generate em-plan em-pack)
  if(TARGET ${t})
    add_dependencies(deploy-image ${t})
  endif()
endforeach()
