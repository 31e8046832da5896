from gitedge.cli import main

raise SystemExit(main())
