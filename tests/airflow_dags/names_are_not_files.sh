echo "this file is a template file, not a jobs_core name"
