# em-pack (tools/pack, tools/em-pack.c): safetensors reader, config mapping, packing, random init, CLI.
# Label "blob". The tests write their own tiny checkpoints from C (no Python); test_pack also packs the
# committed fixture tests/data/mamba2_tiny/ when it is present
# (and nemotronh_mmm/).
if(TARGET em_packlib)
  em_add_test(NAME test_pack_safetensors SOURCES test_pack_safetensors.c LABELS blob LIBS em_packlib)
  em_add_test(NAME test_pack_config SOURCES test_pack_config.c LABELS blob LIBS em_packlib)
  em_add_test(NAME test_pack SOURCES test_pack.c LABELS blob LIBS em_packlib)
  em_add_test(NAME test_pack_random SOURCES test_pack_random.c LABELS blob LIBS em_packlib)
  # The CLI end to end: --random-init, --info, a checkpoint, and error exits (runs the em-pack executable).
  em_add_test(NAME test_pack_cli SOURCES test_pack_cli.c LABELS blob LIBS em_packlib ARGS $<TARGET_FILE:em-pack>)
  add_dependencies(test_pack_cli em-pack)
endif()
