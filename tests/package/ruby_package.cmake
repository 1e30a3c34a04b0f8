# Builds the gem from fastsock.gemspec, installs it with `gem install --local`
# into a fresh GEM_HOME, then runs the whole conformance runner against it:
# RUBYLIB unset, run from outside the source tree, so `require "fastsock"`
# can only find the installed gem; then that another Ruby would refuse it.
# -DSOURCE_DIR -DWORK_DIR -DRUBY -DGEM -DTESTS -DSERVER -DCASES.
file(STRINGS ${SOURCE_DIR}/VERSION version LIMIT_COUNT 1)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(gem_file ${WORK_DIR}/fastsock-${version}.gem)
set(gem_home ${WORK_DIR}/gems)
set(env ${CMAKE_COMMAND} -E env --unset=RUBYLIB --unset=RUBYOPT --unset=BUNDLE_GEMFILE
        GEM_HOME=${gem_home} GEM_PATH=${gem_home})

function(step)
  string(REPLACE ";" " " shown "${ARGN}")
  message(STATUS "$ ${shown}")
  execute_process(COMMAND ${env} ${ARGN} WORKING_DIRECTORY ${WORK_DIR} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${shown}")
  endif()
endfunction()

# gem build evaluates the gemspec from its own directory (it globs from there).
message(STATUS "$ gem build fastsock.gemspec")
execute_process(COMMAND ${GEM} build ${SOURCE_DIR}/fastsock.gemspec --output ${gem_file}
                WORKING_DIRECTORY ${SOURCE_DIR} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "gem build failed (${rc})")
endif()
step(${GEM} install --local --no-document ${gem_file})

step(${RUBY} -e "
  require 'fastsock'
  loaded = $LOADED_FEATURES.grep(%r{/fastsock(/native)?\\.(rb|so)\\z})
  outside = loaded.reject { |f| f.start_with?('${gem_home}/') }
  abort \"loaded from outside the GEM_HOME: #{outside}\" unless outside.empty? && loaded.size == 2
  abort \"Fastsock::VERSION #{Fastsock::VERSION.inspect}, VERSION says ${version}\" unless Fastsock::VERSION == '${version}'
  puts \"fastsock #{Fastsock::VERSION} from #{loaded.join(', ')}\"")
step(${RUBY} -w ${TESTS}/run_cases.rb --server ${SERVER} --cases ${CASES})

# Seen by another Ruby (simulated: the extension built for this one moved to
# another ABI version's directory), the gem is refused with RubyGems' clear
# message, not loaded half-way from the copy in its lib directory.
file(GLOB built ${gem_home}/extensions/*/*/fastsock-${version})
get_filename_component(abi_dir "${built}" DIRECTORY)
file(RENAME ${abi_dir} ${abi_dir}-other)
execute_process(COMMAND ${env} ${RUBY} -e "require 'fastsock'" WORKING_DIRECTORY ${WORK_DIR}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
message(STATUS "another Ruby's require: ${out}")
if(rc EQUAL 0 OR NOT out MATCHES "Ignoring fastsock-${version} because its extensions are not built")
  message(FATAL_ERROR "a gem built for another Ruby is not refused clearly")
endif()
file(REMOVE_RECURSE ${WORK_DIR})
