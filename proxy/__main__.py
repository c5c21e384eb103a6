from switchyard.proxy.cli import main

raise SystemExit(main())
