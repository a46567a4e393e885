"""analysis: reports and plots of training runs, searches and video jobs."""
