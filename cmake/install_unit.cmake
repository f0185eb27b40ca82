# Installs deploy/systemd/stormguard.service with its binary paths naming
# the installed stormguard: at install time, so `cmake --install --prefix P`
# gets a unit that runs P/bin/stormguard. Run by install(SCRIPT) with
# SG_UNIT_SRC, SG_UNIT_DIR, SG_BINDIR and SG_UNIT_OUT (the rewritten copy in
# the build tree) set by CMakeLists.txt.
if(IS_ABSOLUTE "${SG_BINDIR}")
  set(bindir "${SG_BINDIR}")
else()
  set(bindir "${CMAKE_INSTALL_PREFIX}/${SG_BINDIR}")
endif()
if(IS_ABSOLUTE "${SG_UNIT_DIR}")
  set(unitdir "${SG_UNIT_DIR}")
else()
  set(unitdir "${CMAKE_INSTALL_PREFIX}/${SG_UNIT_DIR}")
endif()
file(READ "${SG_UNIT_SRC}" unit)
string(REPLACE "/usr/bin/stormguard" "${bindir}/stormguard" unit "${unit}")
file(WRITE "${SG_UNIT_OUT}" "${unit}")
file(INSTALL DESTINATION "${unitdir}" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ
     WORLD_READ FILES "${SG_UNIT_OUT}")
