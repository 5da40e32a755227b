# Tokenizers, sampler, streaming generation, snapshots, em-chat (issue 4; docs/tokenizers.md).
# Label "tokenizer": the C tokenizers against their references (HF tokenizers goldens for byte-level BPE,
# Debian's spm_encode for SentencePiece). Label "unit": sampler, generation, snapshots, em-chat, run on the
# tiny HF fixture packed at test time with the committed test tokenizers (fixtures below, as golden.cmake
# does), so nothing here needs Python.
set(tok_data ${CMAKE_CURRENT_SOURCE_DIR}/data/tokenizer)
set(tok_dir ${CMAKE_BINARY_DIR}/tok)
file(MAKE_DIRECTORY ${tok_dir})

em_add_test(NAME test_tok_bpe SOURCES test_tok_bpe.c LABELS tokenizer)
em_add_test(NAME test_tok_stream SOURCES test_tok_stream.c LABELS tokenizer)
em_add_test(NAME test_sampler SOURCES test_sampler.c LABELS unit) # its own tiny blobs (tests/tinyblob.c)

# SentencePiece: the reference ids come from Debian's spm_encode (package `sentencepiece`) at test time.
find_program(EM_SPM_ENCODE spm_encode)
if(EM_SPM_ENCODE)
  add_test(NAME tok_spm_encode_reference
           COMMAND ${EM_SPM_ENCODE} --model=${tok_data}/spm.model --output_format=id
                   --output=${tok_dir}/spm_corpus.ids ${tok_data}/spm_corpus.txt)
  set_tests_properties(tok_spm_encode_reference PROPERTIES LABELS tokenizer FIXTURES_SETUP tok_spm_ref)
  set(spm_ids ${tok_dir}/spm_corpus.ids)
else()
  set(spm_ids "-") # test_tok_spm SKIPs the comparison visibly (exit 77) without spm_encode
endif()
em_add_test(NAME test_tok_spm SOURCES test_tok_spm.c LABELS tokenizer
            ARGS ${tok_data}/spm.model ${tok_data}/spm_corpus.txt ${spm_ids})
if(EM_SPM_ENCODE)
  set_tests_properties(test_tok_spm PROPERTIES FIXTURES_REQUIRED tok_spm_ref)
endif()

if(TARGET em-pack)
  # the tiny fixture (vocab 512) with each test tokenizer (vocab 500 SentencePiece, 504 BPE), and without
  foreach(kind spm bpe none)
    if(kind STREQUAL "spm")
      set(tok_arg --tokenizer ${tok_data}/spm.model)
    elseif(kind STREQUAL "bpe")
      set(tok_arg --tokenizer ${tok_data}/bpe_tokenizer.json)
    else()
      set(tok_arg --no-tokenizer)
    endif()
    add_test(NAME tok_pack_${kind}
             COMMAND em-pack ${CMAKE_CURRENT_SOURCE_DIR}/data/mamba2_tiny -o ${tok_dir}/tiny_${kind}.emb --dtype f32 ${tok_arg})
    set_tests_properties(tok_pack_${kind} PROPERTIES LABELS "unit;tokenizer" FIXTURES_SETUP tok_blob_${kind})
  endforeach()
  set(tok_blobs ${tok_dir}/tiny_spm.emb ${tok_dir}/tiny_bpe.emb ${tok_dir}/tiny_none.emb)
  set(tok_fixtures "tok_blob_spm;tok_blob_bpe;tok_blob_none")
  set(tok_hybrid "")
  if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/data/nemotronh_hybrid_gelu/config.json)
    # a hybrid (attention layers: the snapshot's KV part, em-chat's "context full")
    add_test(NAME tok_pack_hybrid
             COMMAND em-pack ${CMAKE_CURRENT_SOURCE_DIR}/data/nemotronh_hybrid_gelu -o ${tok_dir}/hybrid_spm.emb
                     --dtype f32 --tokenizer ${tok_data}/spm.model)
    set_tests_properties(tok_pack_hybrid PROPERTIES LABELS "unit;tokenizer" FIXTURES_SETUP tok_blob_hybrid)
    set(tok_hybrid ${tok_dir}/hybrid_spm.emb)
    list(APPEND tok_fixtures tok_blob_hybrid)
  endif()

  em_add_test(NAME test_generate SOURCES test_generate.c LABELS unit ARGS ${tok_blobs})
  em_add_test(NAME test_snapshot SOURCES test_snapshot.c LABELS unit ARGS ${tok_blobs} ${tok_hybrid})
  set_tests_properties(test_generate test_snapshot PROPERTIES FIXTURES_REQUIRED "${tok_fixtures}")
  if(TARGET em-chat AND TARGET em-generate)
    add_test(NAME test_chat COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_chat.sh $<TARGET_FILE:em-chat>
             $<TARGET_FILE:em-generate> ${tok_dir}/tiny_spm.emb ${tok_dir}/tiny_none.emb ${tok_dir} ${tok_hybrid})
    set_tests_properties(test_chat PROPERTIES LABELS unit TIMEOUT 300 SKIP_RETURN_CODE 77
                         FIXTURES_REQUIRED "${tok_fixtures}")
  endif()
endif()
