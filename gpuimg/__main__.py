from gpuimg.cli import main

raise SystemExit(main())
