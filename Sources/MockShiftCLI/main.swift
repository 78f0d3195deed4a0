// Start-up only (TECH-NOTES P1: callbacks defined here would run main-actor isolated and crash on other threads).
MockShiftCommand.main()
