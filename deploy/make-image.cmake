# deploy/make-image.cmake — builds the deployment image: a rootfs overlay tarball, owned by root, to unpack
# over a target's root filesystem (e.g. Linux_for_Tegra/rootfs before flashing, or / on a running board):
#   /opt/edgemamba/{bin,lib,include,share/edgemamba/models/hybrid.emb}   the install tree and the packed model
#   /opt/edgemamba/bin/edgemamba-assistant                              the launcher (reads the config)
#   /etc/edgemamba/assistant.conf                                       which model, prompt, sampling, backend
#   /etc/systemd/system/edgemamba-assistant.socket, edgemamba-assistant@.service
# Then: systemctl enable --now edgemamba-assistant.socket.  Run by the deploy-image target
# (cmake/packaging.cmake):  cmake -DBUILD_DIR=... -DSOURCE_DIR=... -DOUT=....tar.gz -P deploy/make-image.cmake
foreach(v BUILD_DIR SOURCE_DIR OUT)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "make-image.cmake: -D${v}=... is required")
  endif()
endforeach()
set(stage ${BUILD_DIR}/deploy-stage)
file(REMOVE_RECURSE ${stage})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${stage}/opt/edgemamba
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "make-image.cmake: cmake --install ${BUILD_DIR} failed (${rc})")
endif()
if(NOT EXISTS ${stage}/opt/edgemamba/share/edgemamba/models/hybrid.emb)
  message(FATAL_ERROR "make-image.cmake: the install tree has no packed model (EM_BUNDLE_MODEL off?)")
endif()
file(COPY ${SOURCE_DIR}/deploy/rootfs/ DESTINATION ${stage})
file(COPY ${SOURCE_DIR}/deploy/edgemamba-assistant DESTINATION ${stage}/opt/edgemamba/bin
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
# root-owned, sorted, with a fixed time: the same build gives the same tarball
execute_process(COMMAND tar --owner=0 --group=0 --numeric-owner --sort=name --mtime=2026-01-01 -czf ${OUT} -C ${stage} .
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "make-image.cmake: tar failed (${rc})")
endif()
message(STATUS "deployment image: ${OUT}")
